"""`hansard-hf serve`: a model behind `transformers serve`'s OpenAI-compatible API, with a chat page in front.

transformers serve (5.23-5.25) finds a model's class by name in `transformers` itself, so it cannot load a folder whose
class is its own code (ours, with or without `--trust-remote-code`). A HansardGPT folder is therefore served as
transformers' native NanoChat, exported beside the server (same logits, tested; no code from the folder runs),
with nanochat's sampling and stops in its generation config. In front, one port serves the page and passes the API
through, after checking each request once.
"""

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

# nanochat 10231df scripts/chat_web.py: its defaults and limits
TEMPERATURE, TOP_K, MAX_TOKENS = 0.8, 50, 512
MAX_TEMPERATURE, MAX_MAX_TOKENS, MAX_MESSAGE_CHARS = 2.0, 4096, 8000
READY_SECONDS = 300  # the longest the model's server may take to load before serve gives up


def model_kind(folder: Path, trust_remote_code: bool) -> str:
    """'ours' for a HansardGPT folder, 'native' for a model transformers has the code of; refuses a folder whose
    code would run unless `trust_remote_code`, and anything that is not a model folder."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder}: no config.json there: name a run folder, a checkpoint-N folder or a model folder "
                         "(hansard-hf serves local folders; `hf download` one from the Hub first).")
    try:
        config = json.loads(config_file.read_text())
    except ValueError as error:
        raise ValueError(f"{config_file} is damaged ({error}): not readable as JSON.") from None
    if config.get("model_type") == "hansard_gpt":
        return "ours"
    if config.get("auto_map") and not trust_remote_code:
        raise ValueError(f"{folder} is not a HansardGPT model and brings its own code (auto_map in config.json): "
                         "nothing runs from it unless you pass --trust-remote-code, if you trust that folder.")
    return "native"


def _bos_first(tokenizer) -> None:
    """Every text the server tokenizes starts with <|bos|>, as in training (the chat template writes its own)."""
    from tokenizers.processors import TemplateProcessing

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)])


def prepare_folder(model, out: Path, trust_remote_code: bool = False) -> Path:
    """The folder transformers serve loads. Ours: exported to native NanoChat into `out`, with nanochat's sampling
    and stops (a chat's answer ends at <|assistant_end|>, any text at <|bos|>); another model's: as it is."""
    from transformers import AutoTokenizer, GenerationConfig

    from .configuration_hansard_gpt import HansardGPTConfig
    from .hub import export_to_nanochat

    folder = Path(model)
    if model_kind(folder, trust_remote_code) == "native":
        return folder
    if features := HansardGPTConfig.from_pretrained(folder).features_2026():
        raise ValueError(f"{folder} uses nanochat 2026 parts that transformers' native NanoChat lacks "
                         f"({', '.join(features)}), and transformers serve loads only models transformers has the "
                         "code of: hansard-hf serve cannot serve it; sample it with hansard-hf eval --tasks=sample.")
    export_to_nanochat(folder, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    _bos_first(tokenizer)
    tokenizer.save_pretrained(out)
    stops = [tokenizer.convert_tokens_to_ids("<|assistant_end|>")] if tokenizer.chat_template else []
    GenerationConfig(do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=MAX_TOKENS,
                     bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                     eos_token_id=[*stops, tokenizer.bos_token_id]).save_pretrained(out)
    return out


@dataclass(frozen=True)
class Served:
    """The model behind the page: its name, its tokenizer (a chat template: it answers questions; none: it continues
    text) and its context length, prompt and answer together (None: not stated)."""

    name: str
    tokenizer: object
    context: int | None

    @property
    def chat(self) -> bool:
        return self.tokenizer.chat_template is not None

    @classmethod
    def load(cls, folder: Path, trust_remote_code: bool = False) -> "Served":
        from transformers import AutoTokenizer

        config = json.loads((folder / "config.json").read_text())
        return cls(folder.name, AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code),
                   config.get("max_position_embeddings"))


def _stop_with_parent() -> None:
    """In the model's server, before it starts: Linux sends it SIGTERM if serve dies, even by SIGKILL."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(server: subprocess.Popen, url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise OSError(f"transformers serve stopped while loading the model (exit code {server.returncode}):\n"
                          f"{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise OSError(f"transformers serve did not answer within {READY_SECONDS} s (its log: {log}).")


@contextmanager
def model_server(model, device: str = "auto", trust_remote_code: bool = False):
    """Runs `transformers serve` on the model (see `prepare_folder`) on a free local port; yields its URL and the
    `Served` model; stops it on exit, and removes what it wrote."""
    with tempfile.TemporaryDirectory(prefix="hansard-hf-serve-") as tmp:
        folder = prepare_folder(Path(model).resolve(), Path(tmp) / Path(model).resolve().name, trust_remote_code)
        served = Served.load(folder, trust_remote_code)
        port, log = free_port(), Path(tmp) / "transformers-serve.log"
        # run beside the folder, so the model's id in answers is its name, not a temporary path
        command = [str(Path(sys.executable).with_name("transformers")), "serve", folder.name,
                   "--host", "127.0.0.1", "--port", str(port), "--device", device, "--log-level", "warning"]
        if trust_remote_code:
            command.append("--trust-remote-code")
        with open(log, "w") as output:
            server = subprocess.Popen(command, cwd=folder.resolve().parent, stdin=subprocess.DEVNULL, stdout=output,
                                      stderr=subprocess.STDOUT, preexec_fn=_stop_with_parent)
        try:
            _wait_until_healthy(server, f"http://127.0.0.1:{port}", log)
            yield f"http://127.0.0.1:{port}", served
        finally:
            server.send_signal(signal.SIGINT)  # as Ctrl+C: it shuts down and cleans up after itself
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


class BadRequest(ValueError):
    """A request the page or a client got wrong: answered with a 400 and this message."""


def _json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8: send JSON encoded as UTF-8.") from None
    except ValueError as error:
        raise BadRequest(f"the request body is not JSON ({error}).") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object (model, messages or prompt, ...).")
    return body


def _prompt_ids(body: dict, path: str, model: Served) -> list[int]:
    """The prompt's tokens, as the model's server will make them."""
    if path == "chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a list of at least one {role, content} message.")
        texts = [message.get("content") if isinstance(message, dict) else None for message in messages]
        if not all(isinstance(text, str) for text in texts) or not texts[-1].strip():
            raise BadRequest("the question is empty: each message needs text content, the last one some words.")
        longest = max(len(text) for text in texts)
        if longest > MAX_MESSAGE_CHARS:
            raise BadRequest(f"a message is longer than {MAX_MESSAGE_CHARS:,} characters ({longest:,}).")
        if not model.chat:
            raise BadRequest(f"{model.name} is a base model, without a chat format: POST /v1/completions with a "
                             "prompt, the opening of a debate.")
        try:
            return model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
                "input_ids"]
        except Exception as error:  # noqa: BLE001 - the template's own complaint (roles out of order, ...)
            raise BadRequest(f"the messages do not fit the chat format: {error}") from None
    if path == "completions":
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be one string: the opening of a debate to continue.")
        if not prompt.strip():
            raise BadRequest("the prompt is empty: give the opening of a debate to continue.")
        if len(prompt) > MAX_MESSAGE_CHARS:
            raise BadRequest(f"the prompt is longer than {MAX_MESSAGE_CHARS:,} characters ({len(prompt):,}).")
        return model.tokenizer(prompt)["input_ids"]
    raise BadRequest(f"/v1/{path} is not served here: POST /v1/chat/completions (a chat model) or /v1/completions "
                     "(a prompt to continue).")


def checked_body(raw: bytes, path: str, model: Served) -> dict:
    """The request body as JSON for the model's server, its answer kept within the model's context; or BadRequest
    saying what is wrong with it."""
    body = _json_body(raw)
    if body.get("model") not in (None, model.name):
        raise BadRequest(f"this server serves {model.name!r}, not {body['model']!r}.")
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= MAX_TEMPERATURE):
        raise BadRequest(f"temperature must be a number from 0 to {MAX_TEMPERATURE}.")
    # OpenAI's newer name first, as transformers serve reads them; sent on as max_tokens, checked and capped
    max_tokens = body.pop("max_completion_tokens", None) or body.get("max_tokens", MAX_TOKENS)
    if not (isinstance(max_tokens, int) and 1 <= max_tokens <= MAX_MAX_TOKENS):
        raise BadRequest(f"max_tokens must be a whole number from 1 to {MAX_MAX_TOKENS}.")
    prompt = _prompt_ids(body, path, model)
    if model.context is not None:
        if len(prompt) >= model.context:
            raise BadRequest(f"the prompt has {len(prompt):,} tokens, but the model reads at most {model.context:,}, "
                             "prompt and answer together: shorten it.")
        max_tokens = min(max_tokens, model.context - len(prompt))  # past its context a model's answers are wrong
    return {**body, "model": model.name, "max_tokens": max_tokens}


def front(backend: str, model: Served):
    """The app on the user's port: the page at /, what it needs at /info, the OpenAI API passed through to the
    model's server (streaming included) once each request is checked."""
    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

    client = httpx.AsyncClient(base_url=backend, timeout=httpx.Timeout(None, connect=10))
    app = FastAPI(title=f"hansard-hf serve {model.name}")
    page = files("hansard_hf").joinpath("chat_page.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/info")
    def info():
        return {"model": model.name, "chat": model.chat, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS,
                "max_temperature": MAX_TEMPERATURE, "max_max_tokens": MAX_MAX_TOKENS}

    @app.get("/health")
    async def health():
        try:
            answer = await client.get("/health")
        except httpx.HTTPError:
            return JSONResponse({"status": "unhealthy", "reason": "the model's server does not answer"}, 503)
        return JSONResponse(answer.json(), status_code=answer.status_code)

    @app.get("/v1/models")
    def models():  # the one model (transformers serve 5.23 lists the Hub cache here, and can fail doing so)
        return {"object": "list",
                "data": [{"id": model.name, "object": "model", "created": 0, "owned_by": "hansard-hf"}]}

    @app.post("/v1/{path:path}")
    async def api(path: str, request: Request):
        try:
            body = checked_body(await request.body(), path, model)
        except BadRequest as error:
            return JSONResponse({"error": {"message": str(error), "type": "invalid_request_error"}}, status_code=400)
        try:
            answer = await client.send(client.build_request("POST", f"/v1/{path}", json=body), stream=True)
        except httpx.HTTPError as error:
            return JSONResponse({"error": {"message": f"the model's server did not answer ({error!r})",
                                           "type": "server_error"}}, status_code=502)

        async def relayed():
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:  # also when the client leaves: the model's server then stops generating
                await answer.aclose()

        return StreamingResponse(relayed(), status_code=answer.status_code,
                                 media_type=answer.headers.get("content-type"))

    return app


def serve(model, host: str = "localhost", port: int = 8000, device: str = "auto",
          trust_remote_code: bool = False) -> None:
    """`hansard-hf serve`: the model's server, the page and the API on `host:port`, until Ctrl+C or SIGTERM."""
    import uvicorn

    def stop(*_):
        raise KeyboardInterrupt

    if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        raise OSError("transformers' command-line tool is not beside this Python: reinstall hansard-hf.")
    # uvicorn shuts down on SIGTERM, then raises it again: it must unwind, so the model's server stops and its
    # folder goes
    signal.signal(signal.SIGTERM, stop)
    try:
        with model_server(model, device, trust_remote_code) as (backend, served):
            print(f"serving {served.name} ({'chat' if served.chat else 'continues text: a base model'}) at "
                  f"http://{host}:{port} (the page) and http://{host}:{port}/v1 (OpenAI API)", flush=True)
            uvicorn.run(front(backend, served), host=host, port=port, log_level="info")
    except KeyboardInterrupt:
        pass
    print("stopped", flush=True)
