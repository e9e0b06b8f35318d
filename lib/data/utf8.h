/*
 * utf8.h — strict UTF-8 validation shared by the tokenizer and the dataset
 * (private to libalign). "Valid" means RFC 3629: shortest form only, no
 * UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF — the same rule
 * PCRE2 and jansson apply, so text we accept is text they accept.
 */
#ifndef ALIGN_DATA_UTF8_H
#define ALIGN_DATA_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 sequence starting at s[0] (n bytes
 * available), or 0 if s[0] does not start a valid sequence. */
size_t align__utf8_seq(const unsigned char *s, size_t n);
/* Length of the longest valid UTF-8 prefix of s[0..n). == n when all valid. */
size_t align__utf8_valid_prefix(const unsigned char *s, size_t n);
/* Decodes the sequence of length len (as returned by align__utf8_seq). */
uint32_t align__utf8_decode(const unsigned char *s, size_t len);

#endif
