#!/usr/bin/env bash
# tpinfer-tokenize: output for good input, and a clear error naming the line (exit 1) for bad
# input; usage errors exit 2. Usage: test_cli.sh PATH/TO/tpinfer-tokenize REPO_ROOT
set -u
BIN="$1"
ROOT="$2"
TOK="$ROOT/configs/models/stories260K"
fails=0

expect() {  # name, expected-status, expected-stdout, stderr-substring, then the command's stdin
  local name="$1" want_rc="$2" want_out="$3" want_err="$4" input="$5"
  shift 5
  local out err rc
  err=$(mktemp)
  out=$(printf '%s' "$input" | "$@" 2>"$err")
  rc=$?
  if [[ "$rc" != "$want_rc" ]]; then
    echo "FAIL $name: exit status $rc, expected $want_rc (stderr: $(cat "$err"))"
    fails=$((fails + 1))
  elif [[ -n "$want_out" && "$out" != "$want_out" ]]; then
    echo "FAIL $name: stdout '$out', expected '$want_out'"
    fails=$((fails + 1))
  elif [[ -n "$want_err" ]] && ! grep -qF -- "$want_err" "$err"; then
    echo "FAIL $name: stderr '$(cat "$err")' lacks '$want_err'"
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
  rm -f "$err"
}

expect encode 0 $'[1,346,306,414,263,304,341]\n[1]' "" $'"Hello world"\n""\n' \
  "$BIN" --tokenizer "$TOK"
expect no-add-special 0 '[346,306,414,263,304,341]' "" $'"Hello world"\n' \
  "$BIN" --tokenizer "$TOK" --no-add-special
expect decode 0 $'"<s> Hello world"\n""' "" $'[1,346,306,414,263,304,341]\n[]\n' \
  "$BIN" --tokenizer "$TOK" --decode
expect decode-skip 0 '"Hello world"' "" $'[1,346,306,414,263,304,341]\n' \
  "$BIN" --tokenizer "$TOK" --decode --skip-special
expect crlf-lines 0 '[1,346,306,414]' "" $'"Hello"\r\n' "$BIN" --tokenizer "$TOK"
expect bad-json 1 "" "stdin line 2: not valid JSON" $'"ok"\n{oops\n"never"\n' \
  "$BIN" --tokenizer "$TOK"
expect not-a-string 1 "" "stdin line 1: expected a JSON string, found number" $'42\n' \
  "$BIN" --tokenizer "$TOK"
expect empty-line 1 "" "stdin line 2: not valid JSON" $'"a"\n\n"b"\n' "$BIN" --tokenizer "$TOK"
expect id-out-of-range 1 "" "stdin line 2: id 512 (element 1) is out of range [0, 512)" \
  $'[1]\n[1,512]\n' "$BIN" --tokenizer "$TOK" --decode
expect negative-id 1 "" "stdin line 1: id -3 (element 0) is out of range" $'[-3]\n' \
  "$BIN" --tokenizer "$TOK" --decode
expect not-an-id 1 "" "stdin line 1: element 1 is \"x\", expected an integer id" $'[1,"x"]\n' \
  "$BIN" --tokenizer "$TOK" --decode
expect not-an-array 1 "" "stdin line 1: expected a JSON array of ids, found string" $'"hi"\n' \
  "$BIN" --tokenizer "$TOK" --decode
expect missing-dir 1 "" "tokenizer.json not found" $'"x"\n' "$BIN" --tokenizer /nonexistent
expect usage 2 "" "--tokenizer DIR is required" "" "$BIN"
expect unknown-arg 2 "" "unknown argument '--frobnicate'" "" "$BIN" --tokenizer "$TOK" --frobnicate
# Qwen3: special-token text is matched, and the output stays one line per input line.
expect qwen3 0 $'[151644,872,198,6023,151645]\n[]' "" $'"<|im_start|>user\\nhi<|im_end|>"\n""\n' \
  "$BIN" --tokenizer "$ROOT/configs/tokenizers/qwen3"

if [[ $fails -ne 0 ]]; then
  echo "$fails CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
