"""The engine behind the reference decoders' synchronous API (`stream`/`generate`), one request at a time, so
code written against a decoder (the tool loop, the evaluation, the CLI) runs on the engine unchanged."""

from collections.abc import Iterator, Sequence

from pipo_agent.backends.decode.errors import ContextLengthError as DecodeContextLengthError
from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.decode.types import DecodeResult, DecodeStep
from pipo_agent.backends.engine.errors import ContextLengthError
from pipo_agent.backends.engine.llm_engine import LLMEngine, RequestOutput


class EngineDecoder:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.last_output: RequestOutput | None = None  # the finished output of the latest request

    @property
    def pad_token_id(self) -> int | None:
        """PAD of a PIPO engine (consumers drop it from slots); None for AR, whose slots are all tokens."""
        return self.engine.pad_token_id if self.engine.is_pipo else None

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[DecodeStep]:
        """Validates now (errors are raised here), then yields the request's steps as the engine makes them."""
        try:
            req = self.engine.make_request(prompt_ids, params)
        except ContextLengthError as exc:
            raise DecodeContextLengthError(str(exc)) from exc
        self.engine.enqueue(req)
        return self._steps(req.request_id)

    def _steps(self, request_id: int) -> Iterator[DecodeStep]:
        finished = False
        try:
            while not finished:
                for out in self.engine.step():
                    if out.request_id != request_id:
                        continue
                    if out.step is not None:
                        yield out.step
                    if out.finished:
                        self.last_output = out
                        finished = True
        finally:
            if not finished:
                self.engine.abort(request_id)

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> DecodeResult:
        for _ in self.stream(prompt_ids, params):
            pass
        assert self.last_output is not None and self.last_output.result is not None
        return self.last_output.result
