"""The `sglang.srt.plugins` entry point: SGLang calls `register()` in every one of its processes.

It checks the SGLang version first (the plugin touches internals that change between releases), then registers
the `pipo` config type with transformers, the `PipoForSGLang` model class, the `pipo` attention backend and the
`PIPO` algorithm. SGLang logs and swallows a plugin's exceptions, so `pipo-agent serve --engine sglang` runs
the same version check before starting the server, where a mismatch stops it with the message below.
"""

import contextlib
import logging
from importlib import metadata
from typing import Any

from pipo_agent.backends.sglang import ALGORITHM, ARCHITECTURE, ATTENTION_BACKEND, SGLANG_VERSION

logger = logging.getLogger(__name__)


class SGLangVersionError(RuntimeError):
    pass


def check_sglang_version(installed: str | None = None) -> str:
    """The installed SGLang version; `SGLangVersionError` when it is not the one the plugin is built for."""
    if installed is None:
        try:
            installed = metadata.version("sglang")
        except metadata.PackageNotFoundError as exc:
            raise SGLangVersionError(
                f"SGLang is not installed: the PIPO plugin needs sglang=={SGLANG_VERSION} "
                "(pip install 'pipo-agent[sglang]' on a GPU machine, scripts/install_sglang_cpu.sh on a CPU one)"
            ) from exc
    if installed != SGLANG_VERSION:
        raise SGLangVersionError(
            f"the PIPO plugin is built for sglang=={SGLANG_VERSION} but sglang=={installed} is installed; "
            f"install sglang=={SGLANG_VERSION} (pip install 'pipo-agent[sglang]')"
        )
    return installed


def register() -> None:
    check_sglang_version()

    from transformers import AutoConfig

    from pipo_agent.backends.sglang.config import PipoSGLangConfig

    with contextlib.suppress(ValueError):  # registered already in this process
        AutoConfig.register("pipo", PipoSGLangConfig)

    from sglang.srt.models.registry import ModelRegistry

    from pipo_agent.backends.sglang.model import PipoForSGLang

    ModelRegistry.models[ARCHITECTURE] = PipoForSGLang

    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES, add_attention_backend_choices
    from sglang.srt.layers.attention.attention_registry import register_attention_backend

    from pipo_agent.backends.sglang import attention

    if ATTENTION_BACKEND not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([ATTENTION_BACKEND])
    register_attention_backend(ATTENTION_BACKEND)(attention.create)

    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    if not _algorithm_registered(SpeculativeAlgorithm):
        SpeculativeAlgorithm.register(ALGORITHM, supports_overlap=False, spec_class=_spec_class())(
            _worker_factory
        )
    logger.info("PIPO plugin registered (%s, attention backend %r)", ALGORITHM, ATTENTION_BACKEND)


def _algorithm_registered(algorithms: Any) -> bool:
    try:
        algorithms.from_string(ALGORITHM)
    except (ValueError, KeyError):
        return False
    return True


def _worker_factory(server_args: Any) -> type:
    from pipo_agent.backends.sglang.worker import PipoWorker

    return PipoWorker


def _spec_class() -> type:
    """SGLang 0.5.23's `CustomSpecAlgo` lacks a few methods its scheduler calls on every algorithm."""
    from sglang.srt.speculative.spec_registry import CustomSpecAlgo

    class PipoAlgorithm(CustomSpecAlgo):  # type: ignore[misc,valid-type]
        def carries_draft_hidden_states(self) -> bool:
            return False

        def need_topk(self) -> bool:
            return False

        def get_platform_worker_cls(self) -> None:
            return None

        def has_draft_kv(self) -> bool:
            return False  # the MTP layer's K/V lives in the target pool, at the pair's slot

        def create_future_map(self, device: Any, req_to_token_pool: Any, *args: Any, **kwargs: Any) -> Any:
            from sglang.srt.managers.overlap_utils import FutureMap

            return FutureMap(device, self, req_to_token_pool, *args, **kwargs)

    return PipoAlgorithm
