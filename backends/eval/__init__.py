"""Solving tasks with tools on one decoder, and the evaluation of PIPO against its AR teacher.

- :func:`solve_with_tools`: a small synchronous multi-turn tool loop with typed streaming events.
- :func:`run_evaluation`: held-out accuracy (avg@k, pass@k), speed and confidence calibration, written as
  JSON and a PNG figure.
"""

from pipo_agent.backends.eval.calibration import (
    Calibration,
    CalibrationBin,
    draft_acceptance,
    expected_calibration_error,
)
from pipo_agent.backends.eval.evaluate import DEFAULT_TAUS, HELDOUT_SEED, EvalConfig, run_evaluation
from pipo_agent.backends.eval.plot import plot_report
from pipo_agent.backends.eval.streaming import Channel, ChannelSplitter, IncrementalDetokenizer
from pipo_agent.backends.eval.tool_calls import (
    BUILTIN_TOOLS,
    ParsedTurn,
    Tool,
    ToolCall,
    as_tool,
    parse_turn,
    run_tool,
)
from pipo_agent.backends.eval.tool_loop import (
    LoopEvent,
    LoopResult,
    LoopStats,
    LoopStop,
    ReasoningDelta,
    StreamingDecoder,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    TurnEnd,
    TurnRecord,
    solve_with_tools,
)

__all__ = [
    "BUILTIN_TOOLS",
    "DEFAULT_TAUS",
    "HELDOUT_SEED",
    "Calibration",
    "CalibrationBin",
    "Channel",
    "ChannelSplitter",
    "EvalConfig",
    "IncrementalDetokenizer",
    "LoopEvent",
    "LoopResult",
    "LoopStats",
    "LoopStop",
    "ParsedTurn",
    "ReasoningDelta",
    "StreamingDecoder",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnEnd",
    "TurnRecord",
    "as_tool",
    "draft_acceptance",
    "expected_calibration_error",
    "parse_turn",
    "plot_report",
    "run_evaluation",
    "run_tool",
    "solve_with_tools",
]
