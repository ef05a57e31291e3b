"""unweight.torch: nn.Linear layers whose weight stays in unweightd.

UnweightLinear computes x . W^T with uw_matmul on the daemon's shared copy
of W (BF16 in and out, float32 accumulation), on torch's current CUDA stream
for a cuda model, or on the CPU for a host model. patch_linear swaps the
nn.Linear layers of an existing model (a Hugging Face LlamaForCausalLM, say)
for them and drops their weights, so that the process keeps no copy.
Inference only: a forward that autograd would have to differentiate raises.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from .client import Model


class UnweightLinear(nn.Module):
    """y = x . W^T (+ bias) for the 2-D BF16 tensor name of an attached model.

    x: torch.bfloat16 of shape [..., in_features], on the model's GPU (cuda
    backend) or on the CPU (host backend); y: bfloat16 [..., out_features].
    bias: None, or a tensor of out_features elements on x's device, kept by
    reference (it is small; the weight is the daemon's). The module holds the
    model: detaching it makes forward raise."""

    def __init__(self, model: Model, name: str, bias: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        t = model[name]
        if t.dtype != "BF16" or len(t.shape) != 2:
            raise TypeError(f"UnweightLinear {name}: a 2-D BF16 tensor is needed, "
                            f"this is {t.dtype}{list(t.shape)}")
        self.weight_name = name
        self.out_features, self.in_features = t.shape
        self._tensor = t
        if bias is not None:
            if tuple(bias.shape) != (self.out_features,):
                raise ValueError(f"UnweightLinear {name}: bias of shape {list(bias.shape)}, "
                                 f"expected [{self.out_features}]")
            self.bias: Optional[nn.Parameter] = nn.Parameter(bias.detach(),
                                                             requires_grad=False)
        else:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight={self.weight_name!r} "
                f"({self._tensor.info.format}, {self._tensor.model.backend})")

    def _check_input(self, x: torch.Tensor) -> Optional[int]:
        """Refuse what uw_matmul cannot take; the stream to queue on."""
        name = self.weight_name
        if x.dtype != torch.bfloat16:
            raise TypeError(f"UnweightLinear {name}: input is {x.dtype}, torch.bfloat16 expected")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"UnweightLinear {name}: input of shape {list(x.shape)}, "
                             f"the last dimension must be {self.in_features}")
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError(f"UnweightLinear {name}: no backward through a shared weight "
                               "(run under torch.no_grad() or torch.inference_mode())")
        model = self._tensor.model
        if model.backend == "host":
            if x.device.type != "cpu":
                raise TypeError(f"UnweightLinear {name}: the model is on the host backend, "
                                f"the input on {x.device}")
            return None
        if x.device.type != "cuda":
            raise TypeError(f"UnweightLinear {name}: the model is on the cuda backend, "
                            f"the input on {x.device}")
        dev = model.cuda_device
        if dev is not None and x.device.index != dev:
            raise ValueError(f"UnweightLinear {name}: the input is on {x.device}, "
                             f"the model on cuda:{dev}")
        return torch.cuda.current_stream(x.device).cuda_stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self._check_input(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).contiguous()
        y = torch.empty((x2.shape[0], self.out_features), dtype=torch.bfloat16,
                        device=x.device)
        if x2.shape[0]:
            self._tensor._matmul_raw(x2.data_ptr(), x2.shape[0], y.data_ptr(), stream)
        y = y.view(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y


def linear_mapping(module: nn.Module, names: Iterable[str]) -> Dict[str, str]:
    """{submodule name: NAME.weight} for every nn.Linear of module whose
    NAME.weight is among names (a Model iterates over its tensor names)."""
    have = set(names)
    return {n: f"{n}.weight" for n, m in module.named_modules()
            if isinstance(m, nn.Linear) and f"{n}.weight" in have}


def patch_linear(module: nn.Module, model: Model, mapping: Mapping[str, str]) -> int:
    """Replace the nn.Linear submodules that mapping names ({submodule name:
    tensor name}) with UnweightLinear over model's tensors, and return how
    many were replaced. Every entry is checked first (a Linear, the tensor
    exists, shapes agree); on any error nothing is replaced. Each replaced
    layer keeps its bias and loses its weight (set to None), so the weight's
    memory is freed unless something else refers to it (a tied embedding)."""
    plan: List[Tuple[nn.Module, str, nn.Linear, str]] = []
    for sub, tname in mapping.items():
        if not sub:
            raise ValueError("patch_linear: the module itself cannot be replaced; "
                             "name a submodule")
        old = module.get_submodule(sub)
        if not isinstance(old, nn.Linear):
            raise TypeError(f"patch_linear: {sub} is a {type(old).__name__}, not nn.Linear")
        if tname not in model:
            raise KeyError(f"patch_linear: {sub}: model {model.name} has no tensor {tname!r}")
        shape = model[tname].shape
        if shape != (old.out_features, old.in_features):
            raise ValueError(f"patch_linear: {sub} is {old.out_features}x{old.in_features}, "
                             f"tensor {tname} is {'x'.join(map(str, shape))}")
        parent, _, attr = sub.rpartition(".")
        plan.append((module.get_submodule(parent) if parent else module, attr, old, tname))
    new = [UnweightLinear(model, tname, old.bias) for _, _, old, tname in plan]
    for (parent, attr, old, _), layer in zip(plan, new):
        setattr(parent, attr, layer)
        old.weight = None
    return len(plan)
