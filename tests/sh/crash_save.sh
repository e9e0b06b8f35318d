#!/usr/bin/env bash
# Checkpoint folders survive crashes and full disks (docs/trainer.md,
# "Checkpoints"): a program that trains and saves into one folder over and
# over is killed with SIGKILL at random moments (>= 50 times); after each
# kill the folder must resume, and after the next successful save nothing
# temporary may be left. Then, on a small tmpfs (needs mount; skipped with a
# message where that is not allowed), saves that run out of space fail
# cleanly and the last good checkpoint still resumes.
# Env: BUILD, CC, SAN. Runs in $BUILD/tmp/crash_save.XXXXXX.
set -euo pipefail

BUILD=${BUILD:-build}
B="$(cd "$BUILD" && pwd)"
mkdir -p "$B/tmp"
T=$(mktemp -d "$B/tmp/crash_save.XXXXXX")
MNT=""
cleanup() {
    if [ -n "$MNT" ]; then umount "$MNT" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$T/saver.c" <<'C'
#include "align.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

static align_tokenizer *tok;
static align_model *model;
static align_optimizer *opt;
static align_dataset *data;

static align_trainer *make(void)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1; mp.n_head = 2; mp.n_embd = 32; mp.vocab_size = 257; mp.max_seq_len = 32;
    align_tokenizer_bytes(&tok);
    if (align_model_create(&model, &mp) || align_optimizer_create(&opt, model, NULL) || align_dataset_create(&data))
        exit(3);
    for (int k = 0; k < 20; k++) {
        char p[32], c[8];
        snprintf(p, sizeof p, "caps %c%c:", 'a' + k % 7, 'a' + k % 5);
        snprintf(c, sizeof c, "%c%c", 'A' + k % 7, 'A' + k % 5);
        align_dataset_add_demo(data, p, c, NULL);
    }
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 4; sp.max_steps = 1000000;
    align_trainer *tr = NULL;
    if (align_trainer_create_sft(&tr, model, tok, data, opt, &sp)) exit(3);
    return tr;
}

static int done(align_trainer *tr, int code)
{
    align_trainer_free(tr);
    align_optimizer_free(opt);
    align_model_free(model);
    align_dataset_free(data);
    align_tokenizer_free(tok);
    return code;
}

/* fills the file system of dir up to `leave` free bytes */
static int fill(const char *dir, long long leave)
{
    struct statvfs v;
    if (statvfs(dir, &v)) return -1;
    long long freeb = (long long)v.f_bavail * (long long)v.f_frsize - leave;
    char path[4200];
    snprintf(path, sizeof path, "%s/../filler", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    static char buf[4096];
    for (long long w = 0; w + (long long)sizeof buf <= freeb; w += sizeof buf)
        if (fwrite(buf, 1, sizeof buf, f) != sizeof buf) break;
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    const char *mode = argv[1], *dir = argv[2];
    align_trainer *tr = make();
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    if (!strcmp(mode, "save-forever")) {
        for (;;) {
            if (align_trainer_step(tr, &st) != ALIGN_OK) return 4;
            int rc = align_trainer_save(tr, dir);
            if (rc) { fprintf(stderr, "save: %s\n", align_trainer_errmsg(tr)); return 5; }
        }
    }
    if (!strcmp(mode, "check")) {
        /* resume what is there (if anything), step, save once more */
        int rc = align_trainer_resume(tr, dir), resumed = rc == ALIGN_OK;
        if (rc != ALIGN_OK && rc != ALIGN_ENOENT) {
            fprintf(stderr, "resume: %s (%s)\n", align_err_name(rc), align_trainer_errmsg(tr));
            return done(tr, 6);
        }
        if (align_trainer_step(tr, &st) != ALIGN_OK) return done(tr, 4);
        if ((rc = align_trainer_save(tr, dir))) {
            fprintf(stderr, "save: %s\n", align_trainer_errmsg(tr));
            return done(tr, 5);
        }
        printf("%s %lld\n", resumed ? "resumed" : "fresh", (long long)st.step);
        return done(tr, 0);
    }
    if (!strcmp(mode, "full")) {
        /* argv[3]: bytes to leave free; the save must succeed or fail with ALIGN_EIO */
        if (align_trainer_resume(tr, dir) != ALIGN_OK) { fprintf(stderr, "resume before: %s\n", align_trainer_errmsg(tr)); return 6; }
        int64_t before = align_optimizer_steps_done(opt);
        if (align_trainer_step(tr, &st) != ALIGN_OK) return 4;
        if (fill(dir, atoll(argv[3]))) return 7;
        int rc = align_trainer_save(tr, dir);
        if (rc != ALIGN_OK && rc != ALIGN_EIO) { fprintf(stderr, "save: %s %s\n", align_err_name(rc), align_trainer_errmsg(tr)); return 8; }
        printf("%s\n", rc == ALIGN_OK ? "saved" : "full");
        /* whatever happened, the folder resumes: the new checkpoint or the old one */
        align_trainer *t2 = NULL;
        align_model *m2 = NULL;
        align_optimizer *o2 = NULL;
        align_model_params mp;
        ALIGN_MODEL_DEFAULT_PARAMS(&mp);
        mp.n_layer = 1; mp.n_head = 2; mp.n_embd = 32; mp.vocab_size = 257; mp.max_seq_len = 32;
        align_model_create(&m2, &mp);
        align_optimizer_create(&o2, m2, NULL);
        align_sft_params sp;
        ALIGN_SFT_DEFAULT_PARAMS(&sp);
        sp.micro_batch = 4; sp.max_steps = 1000000;
        align_trainer_create_sft(&t2, m2, tok, data, o2, &sp);
        int code = 0;
        if (align_trainer_resume(t2, dir) != ALIGN_OK) {
            fprintf(stderr, "resume after: %s\n", align_trainer_errmsg(t2));
            code = 9;
        } else if (align_optimizer_steps_done(o2) != (rc == ALIGN_OK ? before + 1 : before)) {
            fprintf(stderr, "resumed step %lld\n", (long long)align_optimizer_steps_done(o2));
            code = 10;
        }
        align_trainer_free(t2);
        align_optimizer_free(o2);
        align_model_free(m2);
        return done(tr, code);
    }
    return done(tr, 2);
}
C
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -Iinclude $SAN "$T/saver.c" -o "$T/saver" \
    -L"$B" -lalign -Wl,-rpath,"$B" -lm

leftovers() { # $1 parent, $2 name: temporary siblings and files
    { ls -a "$1" | grep -E "^\.$2\.(new|old)-" || true; find "$1/$2" -name '*.tmp.*' 2>/dev/null || true; } | wc -l
}

# ---- kill -9 at random moments ------------------------------------------------------
CK="$T/run/ck"
mkdir -p "$T/run"
kills=0; resumed=0
start=$SECONDS
for i in $(seq 1 50); do
    "$T/saver" save-forever "$CK" 2>"$T/err.txt" &
    pid=$!
    # 10..159 ms: the save is most of a step, so kills land inside it
    sleep "0.$(printf "%03d" $((10 + RANDOM % 150)))"
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)) || { cat "$T/err.txt" >&2; fail "saver ended by itself"; }
    wait "$pid" 2>/dev/null || true
    out=$("$T/saver" check "$CK" 2>"$T/err.txt") || { cat "$T/err.txt" >&2; fail "after kill $i the checkpoint does not resume"; }
    case "$out" in resumed*) resumed=$((resumed + 1)) ;; esac
    n=$(leftovers "$T/run" ck)
    [ "$n" = 0 ] || { ls -la "$T/run" "$CK" >&2; fail "after kill $i and a save, $n temporary entries are left"; }
done
[ "$kills" -ge 50 ] || fail "only $kills kills"
[ "$resumed" -ge $((kills - 2)) ] || fail "only $resumed of $kills kills left a checkpoint to resume"
echo "ok - $kills kills -9 during saves in $((SECONDS - start)) s; the folder resumed every time ($resumed with a checkpoint); no temporary files left"

# ---- full disk ---------------------------------------------------------------------
MNT="$T/small"
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=2m tmpfs "$MNT" 2>/dev/null; then
    MNT=""
    echo "skip - full-disk test: cannot mount a tmpfs here (needs root and mount permission)"
    exit 0
fi
mkdir -p "$MNT/d"
"$T/saver" check "$MNT/d/ck" > /dev/null || fail "first save on the tmpfs"
size=$(du -sb "$MNT/d/ck" | cut -f1)
saved=0; full=0
for leave in 0 4096 16384 $((size / 4)) $((size / 2)) $((size * 3 / 4)) $((size - 4096)) $size $((size + 65536)) $((size * 2)); do
    out=$("$T/saver" full "$MNT/d/ck" "$leave" 2>"$T/err.txt") || { cat "$T/err.txt" >&2; fail "full disk, $leave bytes free: exit $?"; }
    rm -f "$MNT/d/filler"
    case "$out" in saved) saved=$((saved + 1)) ;; full) full=$((full + 1)) ;; esac
    n=$(leftovers "$MNT/d" ck)
    [ "$n" = 0 ] || { ls -la "$MNT/d" >&2; fail "full disk ($leave bytes free): $n temporary entries left"; }
done
[ "$full" -ge 3 ] || fail "the disk was full in only $full of the saves"
[ "$saved" -ge 1 ] || fail "no save succeeded with room to spare"
echo "ok - full disk: $full saves failed with ALIGN_EIO and left nothing; $saved succeeded; the last good checkpoint always resumed"
