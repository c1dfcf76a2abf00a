"""A real OpenAI-compatible chat server on 127.0.0.1, for tests of the remote-API path.

LiteLLM talks to it over HTTP exactly as it would to a hosted API. Behind it is a small
scripted "model": for a guide prompt (one that asks for a `strategy` field, or gcop's plain
prompt for a plan) it writes a plan, in the prompt's format; for a core prompt it solves
"What is A plus B?" questions (correctly, or wrongly when the question says "trick"); for
any other prompt (DSPy MIPROv2's dataset summaries, program descriptions and instruction
proposals) it writes a sentence in every output field the prompt asks for. It counts the
requests it served, so a test can assert that a cached rerun made zero model calls.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_PLAN = {"steps": ["Read the two numbers.", "Add them together."]}
LEAKY_PLAN_TEMPLATE = {"steps": ["Add the numbers.", "The sum is {answer}."]}
INSTRUCTION = "Add the two numbers in the question and reply with their sum."
"""What it proposes when asked for an instruction; any other free-text field gets NOTE."""
NOTE = "The questions ask for the sum of two whole numbers."

PROPOSER_PROMPTS = (
    "calls to language models",
    "calls to an LM",
    "about my dataset",
    "examples from a dataset",
)
"""Phrases of the instructions of DSPy's proposer signatures (`dspy.propose`)."""


def proposer_fields(system: str, plain: bool) -> list[str] | None:
    """The output fields a DSPy proposer prompt asks for (None for any other prompt): the
    plain adapter asks for its one field with `Reply with <its description>.`, the
    ChatAdapter lists them."""
    if not any(phrase in system for phrase in PROPOSER_PROMPTS):
        return None
    if plain:
        return [system.rpartition("\nReply with ")[2]]
    listed = system.partition("Your output fields are:\n")[2].partition("All interactions")[0]
    return re.findall(r"^\d+\. `(\w+)`", listed, re.M)


class ScriptedModel:
    """What the server answers; tests may change `plan` between runs."""

    def __init__(self) -> None:
        self.plan: str = "good"  # "good", "leaky" or "garbage"
        self.requests = 0
        self.faults: list[str] = []
        """Served in order, one per request, before normal answers: "429", "500", "slow",
        "truncated" (half a JSON body) or "garbage" (an answer no adapter can parse)."""
        self.slow_seconds = 3.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        """Seconds every request takes (a slow remote API)."""
        self.bodies: list[dict] = []
        self.answered: list[dict] = []
        """Requests whose full answer was written back (not those cut off by a kill)."""
        self.lock = threading.Lock()

    def reply(self, body: dict) -> str:
        """Answers DSPy ChatAdapter prompts in kind, and gcop's plain prompts in kind."""
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        plain = "[[ ##" not in system
        marker = "\n\nStrategy:\n" if plain else "[[ ## strategy ## ]]"
        question, _, plan = user.partition(marker)
        if fields := proposer_fields(system, plain):
            texts = [INSTRUCTION if "instruction" in f else NOTE for f in fields]
            if plain:
                return texts[0]
            sections = [f"[[ ## {f} ## ]]\n{t}" for f, t in zip(fields, texts, strict=True)]
            return "\n\n".join([*sections, "[[ ## completed ## ]]"])
        numbers = [int(n) for n in re.findall(r"-?\d+", question)]
        answer = sum(numbers[:2]) if len(numbers) >= 2 else 0
        wants_plan = (
            "Reply with the plan only" in system or "Reply with JSON only" in system
            if plain
            else "`strategy`" in system and "Your output fields are:\n1. `strategy`" in system
        )
        if wants_plan:
            if self.plan == "garbage":
                return "I will not write JSON."
            plan = (
                GOOD_PLAN
                if self.plan == "good"
                else {"steps": [s.format(answer=answer) for s in LEAKY_PLAN_TEMPLATE["steps"]]}
            )
            if body.get("response_format"):  # decoding under the JSON schema
                return json.dumps(plan)
            if plain:
                return "\n".join(f"{i}. {step}" for i, step in enumerate(plan["steps"], 1))
            return f"[[ ## strategy ## ]]\n{json.dumps(plan)}\n\n[[ ## completed ## ]]"
        if "trick" in question and not plan:
            answer += 1  # alone, the core falls for trick questions; any plan fixes them
        if "trick" in plan:
            answer += 1  # a plan that calls the question a trick misleads the core
        if plain:
            return f"Add {numbers[:2]}.\nAnswer: {answer}"
        return (
            f"[[ ## reasoning ## ]]\nAdd {numbers[:2]}.\n\n[[ ## answer ## ]]\n{answer}\n\n"
            "[[ ## completed ## ]]"
        )


def make_handler(model: ScriptedModel):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with model.lock:
                model.requests += 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                model.bodies.append({"headers": headers, **body})
                fault = model.faults.pop(0) if model.faults else None
            with model.lock:
                model.in_flight += 1
                model.max_in_flight = max(model.max_in_flight, model.in_flight)
            try:
                self._answer(body, fault)
            finally:
                with model.lock:
                    model.in_flight -= 1

        def _answer(self, body: dict, fault: str | None) -> None:
            time.sleep(model.delay)
            if fault in ("429", "500"):
                return self._send(int(fault), {"error": {"message": f"injected {fault}"}})
            if fault == "slow":
                time.sleep(model.slow_seconds)
            texts = [model.reply(body) for _ in range(body.get("n") or 1)]
            if fault == "garbage":
                texts = ["%%% <<garbage>> no fields here" for _ in texts]
            # a reply longer than max_tokens (a word is a token here) is cut, as an API does
            limit = body.get("max_tokens") or body.get("max_completion_tokens")
            cut = [bool(limit) and len(text.split()) > limit for text in texts]
            texts = [" ".join(t.split()[:limit]) if c else t
                     for t, c in zip(texts, cut, strict=True)]  # fmt: skip
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
            completion_tokens = sum(len(t.split()) for t in texts)
            payload = {
                "id": f"chatcmpl-{model.requests}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": i, "finish_reason": "length" if cut[i] else "stop",
                     "message": {"role": "assistant", "content": text}}
                    for i, text in enumerate(texts)
                ],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }  # fmt: skip
            if self._send(200, payload, truncate=fault == "truncated") and not fault:
                with model.lock:
                    model.answered.append(body)

        def _send(self, status: int, payload: dict, truncate: bool = False) -> bool:
            data = json.dumps(payload).encode()
            if truncate:
                data = data[: len(data) // 2]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
                self.wfile.flush()
                return True
            except (BrokenPipeError, ConnectionResetError):  # the client gave up or died
                return False

        def log_message(self, *args) -> None:
            pass

    return Handler


class LoopbackAPI:
    """Start with `with LoopbackAPI() as api:`; `api.base_url` is the OpenAI api_base."""

    def __init__(self) -> None:
        self.model = ScriptedModel()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.model))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
