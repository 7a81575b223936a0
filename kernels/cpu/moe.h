// CPU launchers of the mixture-of-experts layer's glue: routing (softmax, top-k, renormalise),
// grouping the routed rows by expert, and the weighted sum of the experts' outputs. The experts'
// matmuls themselves are the ordinary GEMM kernels (gemm.h / gemm_int8.h), one per active expert.
// T = tokens, E = experts, k = experts per token; R = T * k routed rows.
#pragma once

#include <cstdint>

namespace tpinfer::cpu {

// ids[t, :k] and weights[t, :k] from logits [T, E]: p = softmax(logits[t]) in f32, the k largest
// selected and ordered exactly as torch.topk does on the CPU (a (value, index) nth_element for k
// - 1 then a sort of the first k - 1, or a partial sort when 64 k <= E, with "value greater"
// as the only order: equal scores keep the order those algorithms leave them in), then divided
// by their sum when normalize.
void moe_route(int32_t* ids, float* weights, const float* logits, int T, int E, int k,
               bool normalize);

// Counting sort of the routed rows by expert, stable in token order: offsets[e] .. offsets[e+1]
// are expert e's rows, order[r] = t * k + j of routed row r. Checks ids are in [0, E).
// Returns false on an id out of range.
bool moe_group(int32_t* order, int32_t* offsets, const int32_t* ids, int T, int k, int E);

// out[t] = sum over the token's k routed rows, in increasing expert index, of weights[t * k + j]
// * y[r] (y [R, H] in grouped order), summed from zero as transformers' index_add_ loop does.
void moe_combine(float* out, const float* y, const float* weights, const int32_t* ids,
                 const int32_t* order, int T, int k, int H, int R);

}  // namespace tpinfer::cpu
