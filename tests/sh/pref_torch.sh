#!/usr/bin/env bash
# The PyTorch reference table in tests/check_internal_pref_loss.c is what
# torch computes (tests/pref_loss_torch.py --check); skipped without torch.
set -euo pipefail
py=/usr/bin/python3
if ! [ -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
  echo "SKIP: python3-torch not importable (apt-get install python3-torch to run this check)"
  exit 0
fi
"$py" tests/pref_loss_torch.py --check tests/check_internal_pref_loss.c
