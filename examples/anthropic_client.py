"""The official anthropic SDK against the gateway's /v1/messages: one message, then the same streamed.

    python examples/anthropic_client.py                       # gateway from `make demo`
    python examples/anthropic_client.py --model claude-sonnet-4-5

The virtual key (an Anthropic-backed one) comes from --key, else LLM_GATEWAY_KEY, else vk_demo_anthropic.
The SDK's base URL is the gateway's root, without /v1: the SDK adds /v1/messages itself.
"""

from __future__ import annotations

import argparse
import os
import sys

from anthropic import Anthropic, APIError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("LLM_GATEWAY_ANTHROPIC_URL", "http://localhost:8080"))
    parser.add_argument("--key", default=os.environ.get("LLM_GATEWAY_KEY", "vk_demo_anthropic"))
    parser.add_argument("--model", default="claude-haiku-4-5")
    args = parser.parse_args()

    client = Anthropic(base_url=args.base_url, api_key=args.key, max_retries=0)
    messages = [{"role": "user", "content": "Say hello in five words."}]
    try:
        message = client.messages.create(model=args.model, max_tokens=256, messages=messages)
        text = "".join(block.text for block in message.content if block.type == "text")
        print(f"reply:  {text}")
        print(f"usage:  {message.usage.input_tokens} input + {message.usage.output_tokens} output tokens")

        print("stream: ", end="", flush=True)
        with client.messages.stream(model=args.model, max_tokens=256, messages=messages) as stream:
            for piece in stream.text_stream:
                print(piece, end="", flush=True)
            final = stream.get_final_message()
        print(f"\nusage:  {final.usage.output_tokens} output tokens, stop reason {final.stop_reason}")
    except APIError as exc:
        # The gateway answers /v1/messages errors in Anthropic's shape, so the SDK raises its usual types.
        print(f"\n{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
