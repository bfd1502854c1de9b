"""The official openai SDK against the gateway: one chat completion, then the same streamed.

    python examples/openai_client.py                                   # gateway from `make demo`
    python examples/openai_client.py --key vk_demo_anthropic --model claude-haiku-4-5

The virtual key comes from --key, else LLM_GATEWAY_KEY, else vk_demo_openai. Only the base URL and the
key differ from calling OpenAI itself: the gateway holds the real provider key.
"""

from __future__ import annotations

import argparse
import os
import sys

from openai import APIError, OpenAI


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("LLM_GATEWAY_URL", "http://localhost:8080/v1"))
    parser.add_argument("--key", default=os.environ.get("LLM_GATEWAY_KEY", "vk_demo_openai"))
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0)
    messages = [{"role": "user", "content": "Say hello in five words."}]
    try:
        completion = client.chat.completions.create(model=args.model, messages=messages)
        print(f"reply:  {completion.choices[0].message.content}")
        if completion.usage is not None:
            print(f"usage:  {completion.usage.prompt_tokens} prompt + {completion.usage.completion_tokens} completion tokens")

        print("stream: ", end="", flush=True)
        stream = client.chat.completions.create(
            model=args.model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            if chunk.usage is not None:
                print(f"\nusage:  {chunk.usage.total_tokens} tokens in all", end="")
        print()
    except APIError as exc:
        # The gateway's errors use OpenAI's shape, so the SDK raises its usual exception types.
        print(f"\n{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
