// The CUDA row kernels as one table (compiled only when the extension is built with CUDA).
#include "rows.h"

namespace elp_fast {
namespace cuda {
void bias_act(const BiasActArgs&);
void bias_act_grad(const BiasActGradArgs&);
void adapter_out(const AdapterOutArgs&);
void adapter_out_grad(const AdapterOutGradArgs&);
void layer_fwd(const LayerFwdArgs&);
void layer_bwd(const LayerBwdArgs&);
void wsum_fwd(const WsumFwdArgs&);
void wsum_bwd(const WsumBwdArgs&);
}  // namespace cuda

const RowKernels& cuda_row_kernels() {
  static const RowKernels table{"cuda",           cuda::bias_act,  cuda::bias_act_grad, cuda::adapter_out,
                                cuda::adapter_out_grad, cuda::layer_fwd, cuda::layer_bwd,     cuda::wsum_fwd,
                                cuda::wsum_bwd};
  return table;
}

}  // namespace elp_fast
