"""unweight: Python binding of libunweight-client, the client library of
unweightd (shared, losslessly compressed LLM weights).

    import unweight
    with unweight.connect("/tmp/uw.sock") as c, c.attach("stories260K") as m:
        w = m["model.layers.0.mlp.up_proj.weight"]
        print(w.info)
        bits = w.decode()                         # host: NumPy uint16 BF16 bits
        y = w.matmul(np.ones((4, w.shape[1]), np.float32))   # BF16 bits out

On the host backend arrays are NumPy (BF16 as uint16 bit patterns; float32
inputs are rounded to BF16); on the cuda backend they are PyTorch tensors on
the model's GPU, and the work is queued on torch's current stream.
unweight.torch has an nn.Module over uw_matmul. python/README.md has the
reference; libunweight-client(3) the semantics of each call.
"""
from ._buffers import bf16_to_float32, float32_to_bf16
from .client import (Client, Model, Tensor, TensorInfo, UnweightError, connect,
                     lib)

__all__ = ["connect", "Client", "Model", "Tensor", "TensorInfo", "UnweightError",
           "bf16_to_float32", "float32_to_bf16", "lib"]
__version__ = "0.1.0"
