/*
 * tok_nfc.c — the NFC normalizer of tokenizer.json (Qwen2 has one), as a
 * check: text that Unicode normalization form C leaves unchanged passes as
 * it is; text it could change is refused with the offending code point.
 * Most text is already NFC (keyboards, the web and Python's str all produce
 * precomposed characters), and refusing the rest is better than tokenizing
 * it differently from the model's own tokenizer. The decision follows the
 * NFC quick-check of UAX #15, with its "Maybe" answers resolved against the
 * primary composites: a Maybe character is refused if it could compose with
 * the starter before it, or if that starter is a composite whose own marks
 * it would be reordered before (a conservative rule: a composition that
 * intervening marks would block is refused too). Tables: tok_nfc_table.h.
 */
#include "data/tok_internal.h"
#include "data/utf8.h"

#include "data/tok_nfc_table.h"

static void lookup(uint32_t cp, int *ccc, int *qc)
{
    size_t lo = 0, hi = sizeof nfc_ranges / sizeof *nfc_ranges;
    *ccc = 0;
    *qc = 0;
    if (cp < 0x300) /* below the first combining mark every character is a plain starter */
        return;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < nfc_ranges[mid].lo) {
            hi = mid;
        } else if (cp > nfc_ranges[mid].hi) {
            lo = mid + 1;
        } else {
            *ccc = nfc_ranges[mid].ccc;
            *qc = nfc_ranges[mid].qc;
            return;
        }
    }
}

/* For a primary composite: the combining class of the last character of its
 * full decomposition (its marks come back in that order); -1 otherwise. */
static int composite_last_ccc(uint32_t cp)
{
    size_t lo = 0, hi = sizeof nfc_composites / sizeof *nfc_composites;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = nfc_composites[mid] >> 8;
        if (c == cp)
            return (int)(nfc_composites[mid] & 0xff);
        if (c < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int composes(uint32_t a, uint32_t b)
{
    uint64_t key = (uint64_t)a << 21 | b;
    size_t lo = 0, hi = sizeof nfc_pairs / sizeof *nfc_pairs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (nfc_pairs[mid] == key)
            return 1;
        if (nfc_pairs[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int align__tok_nfc_check(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    int last_ccc = 0;
    uint32_t starter = 0, prev = 0;
    for (size_t i = 0; i < n;) {
        size_t l = align__utf8_seq(s + i, n - i);
        if (!l) { /* cannot happen: runs are valid UTF-8 */
            i++;
            continue;
        }
        uint32_t cp = align__utf8_decode(s + i, l);
        int ccc, qc, bad;
        lookup(cp, &ccc, &qc);
        bad = qc == 2 || (ccc != 0 && last_ccc > ccc);
        if (!bad && qc == 1) {
            if (cp >= 0x1161 && cp <= 0x1175) /* Hangul V after L */
                bad = prev >= 0x1100 && prev <= 0x1112;
            else if (cp >= 0x11A8 && cp <= 0x11C2) /* Hangul T after an LV syllable */
                bad = prev >= 0xAC00 && prev <= 0xD7A3 && (prev - 0xAC00) % 28 == 0;
            else /* or a composite starter whose own marks this one would be
                  * reordered before (é + U+0323 is U+1EB9 U+0301) */
                bad = starter && (composes(starter, cp) || (ccc && ccc < composite_last_ccc(starter)));
        }
        if (bad)
            return align__error(NULL, ALIGN_EFORMAT, "text is not in Unicode NFC at byte %zu (U+%04X): this "
                                "tokenizer's NFC normalizer accepts only text that NFC leaves unchanged (Unicode "
                                TOK_NFC_UNICODE "); normalize the text to NFC first", i, (unsigned)cp);
        if (ccc == 0)
            starter = cp;
        last_ccc = ccc;
        prev = cp;
        i += l;
    }
    return ALIGN_OK;
}
