"""Turns on the one SGLang CPU kernel that SGLang reserves for CPUs with AMX: the GDN layer's gated RMS norm.

SGLang picks `torch.ops.sgl_kernel.fused_rmsnorm_gated_cpu` for the gated norm of Qwen3.5 / Qwen3-Next only when
`cpu_has_amx_support()` (`_use_cpu` in `sglang.kernels.ops.attention.fla.layernorm_gated`); on any other CPU it
launches a Triton kernel, which needs a GPU. Everywhere else those models call this package's CPU ops on any CPU,
or plain torch where SGLang keeps a kernel for AMX. So when SGLang runs on the CPU, this sets that module's
`_use_cpu`, as soon as the module is imported (or at once, if it already is): nothing else of SGLang changes, and
the norm is this package's own op.
"""

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

GATED_NORM_MODULE = "sglang.kernels.ops.attention.fla.layernorm_gated"


def _enable(module: ModuleType) -> None:
    if module.is_cpu():  # SGLang's own test: the CPU platform (SGLANG_USE_CPU_ENGINE=1)
        module._use_cpu = True


class _OnImport(importlib.abc.MetaPathFinder):
    """Finds the module with the finders after it, and runs `_enable` once the module has executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != GATED_NORM_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _enable(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    module = sys.modules.get(GATED_NORM_MODULE)
    if module is not None:
        _enable(module)
    elif not any(isinstance(finder, _OnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OnImport())
