#!/usr/bin/env bash
# Exercises the routing decision API of a running gateway:
#   turnout up examples/model_routing_service/config.yaml   (in another terminal)
#   bash examples/model_routing_service/demo.sh [http://127.0.0.1:12000]
# Needs no API key: /routing/v1/* only decides, it calls no model.
set -euo pipefail
BASE="${1:-${TURNOUT_URL:-http://127.0.0.1:12000}}"

post() {  # post PATH JSON
  local path=$1 body=$2
  echo "POST $path"
  echo "  $body"
  echo -n "  => "
  curl -sS --fail-with-body -X POST "$BASE$path" -H 'content-type: application/json' -d "$body"
  echo
  echo
}

post /routing/v1/chat/completions \
  '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Write a Python function that implements binary search on a sorted array"}]}'

post /routing/v1/messages \
  '{"model": "anthropic/claude-sonnet-4-20250514", "max_tokens": 512, "system": "You are a careful analyst.", "messages": [{"role": "user", "content": [{"type": "text", "text": "Analyze the trade-offs between microservices and a monolith for a five-person startup, step by step"}]}]}'

post /routing/v1/responses \
  '{"model": "openai/gpt-4o", "instructions": "Be brief.", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Create a boilerplate Express.js server with a health check route"}]}]}'

echo "# no route: the request's own model is used"
post /routing/v1/chat/completions \
  '{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi there, thanks for the help earlier!"}]}'

echo "# inline routing_preferences replace the configured routes for this request"
post '/routing/v1/chat/completions?explain=1' \
  '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Translate this sentence into German: the meeting is moved to Monday"}], "routing_preferences": [{"name": "translation", "description": "translating text between languages", "models": ["openai/gpt-4o"]}, {"name": "code_generation", "description": "generating new code or writing functions", "models": ["anthropic/claude-sonnet-4-20250514"]}]}'
