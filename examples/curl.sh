#!/usr/bin/env bash
# curl examples against a running gateway (start one with `make demo`).
#
#   bash examples/curl.sh              # run every example
#   bash examples/curl.sh stream       # run one: chat stream models anthropic messages errors
#
# GATEWAY (default http://localhost:8080), OPENAI_KEY (vk_demo_openai) and ANTHROPIC_KEY
# (vk_demo_anthropic) choose the gateway and the virtual keys. Each example prints its command first.
set -euo pipefail

GATEWAY=${GATEWAY:-http://localhost:8080}
OPENAI_KEY=${OPENAI_KEY:-vk_demo_openai}
ANTHROPIC_KEY=${ANTHROPIC_KEY:-vk_demo_anthropic}

# Print a command (quoted so it can be pasted), run it, and end its output with a newline.
run() {
  local shown="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@-]+$ ]]; then shown+="$arg "; else shown+="'$arg' "; fi
  done
  printf '\n$ %s\n' "$shown"
  "$@" || true
  echo
}

section() { printf '\n\033[1m== %s ==\033[0m\n' "$1"; }

chat() {
  section "A chat completion (OpenAI format, OpenAI-backed key)"
  run curl -sS "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}'

  section "The same, with response headers (-i): x-gateway-overhead-ms is the gateway's own time"
  run curl -sS -i "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}'
}

stream() {
  section "A streamed chat completion (-N: print each server-sent event as it arrives)"
  run curl -sS -N "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
         "messages": [{"role": "user", "content": "Say hello"}]}'
}

models() {
  section "The models the key's provider offers (OpenAI's list format for either provider)"
  run curl -sS "$GATEWAY/v1/models" -H "Authorization: Bearer $OPENAI_KEY"
  run curl -sS "$GATEWAY/v1/models" -H "Authorization: Bearer $ANTHROPIC_KEY"
}

anthropic() {
  section "An Anthropic-backed key on the OpenAI endpoint: translated to Anthropic's Messages API and back"
  run curl -sS "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $ANTHROPIC_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Say hello"}]}'

  section "... streamed: Anthropic's events arrive as OpenAI chat.completion.chunk events"
  run curl -sS -N "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $ANTHROPIC_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "claude-haiku-4-5", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]}'
}

messages() {
  section "Anthropic's own format on /v1/messages (the Anthropic SDK's way), passed through"
  run curl -sS "$GATEWAY/v1/messages" \
    -H "x-api-key: $ANTHROPIC_KEY" \
    -H "anthropic-version: 2023-06-01" \
    -H "Content-Type: application/json" \
    -d '{"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Say hello"}]}'

  run curl -sS -N "$GATEWAY/v1/messages" \
    -H "x-api-key: $ANTHROPIC_KEY" \
    -H "anthropic-version: 2023-06-01" \
    -H "Content-Type: application/json" \
    -d '{"model": "claude-haiku-4-5", "max_tokens": 256, "stream": true,
         "messages": [{"role": "user", "content": "Say hello"}]}'
}

errors() {
  section "Errors: every one in the OpenAI error shape {\"error\": {\"message\", \"type\", \"param\", \"code\"}}"
  # No key: 401.
  run curl -sS -i "$GATEWAY/v1/chat/completions" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'
  # A key the gateway does not know: 401 (the key is shown masked, never whole).
  run curl -sS "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer vk_not_a_real_key" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'
  # A body that is not JSON: 400.
  run curl -sS "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini", "messages": ['
  # A request without messages: 400 naming the parameter.
  run curl -sS "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "gpt-4o-mini"}'
  # An error from the provider is relayed with its status: the demo's mock answers
  # a model named error-<status> with that status (here a 429 with Retry-After).
  run curl -sS -i "$GATEWAY/v1/chat/completions" \
    -H "Authorization: Bearer $OPENAI_KEY" \
    -H "Content-Type: application/json" \
    -d '{"model": "error-429", "messages": [{"role": "user", "content": "Hi"}]}'
  # An unknown endpoint: 404.
  run curl -sS "$GATEWAY/v1/nothing-here" -H "Authorization: Bearer $OPENAI_KEY"
}

ALL=(chat stream models anthropic messages errors)
if [ $# -eq 0 ]; then
  set -- "${ALL[@]}"
fi
for example in "$@"; do
  case " ${ALL[*]} " in
    *" $example "*) "$example" ;;
    *) echo "unknown example '$example'; choose from: ${ALL[*]}" >&2; exit 2 ;;
  esac
done
