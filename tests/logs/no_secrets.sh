#!/usr/bin/env bash
# The suite's last test: no server the doctest cases started logged a secret of its
# config. Each kept log (AUDSYNC_TEST_LOG_DIR) has a .secrets file beside it listing its
# config's secret values; "setup" empties the folder before the suite runs.
set -euo pipefail
dir=$1
if [ "${2:-}" = setup ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    exit 0
fi
shopt -s nullglob
logs=("$dir"/*.log)
if [ ${#logs[@]} -eq 0 ]; then
    echo "no server logs in $dir: the suite kept none (AUDSYNC_TEST_LOG_DIR unset?)" >&2
    exit 1
fi
failed=0
checked=0
for log in "${logs[@]}"; do
    [ -f "$log.secrets" ] || continue
    while IFS= read -r secret; do
        [ -n "$secret" ] || continue
        checked=$((checked + 1))
        if grep -qF -- "$secret" "$log"; then
            echo "LEAK: $log contains a secret of its config (${#secret} characters):" >&2
            grep -nF -- "$secret" "$log" | head -3 >&2
            failed=1
        fi
    done <"$log.secrets"
done
echo "searched ${#logs[@]} server logs for their configs' secrets ($checked searches)"
exit $failed
