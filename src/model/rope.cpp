// RoPE frequencies (see rope.h), written after transformers 5's modeling_rope_utils.py. Like
// transformers, the tensors are float32 and the scalars (factors, logs) double.
#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tpinfer {

namespace {

// 1 / base^(2i/dim) in float32, as torch computes `1.0 / (base ** (arange(0, dim, 2) / dim))`.
std::vector<float> default_inv_freq(double base, int dim) {
  std::vector<float> f(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    f[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(base), e);
  }
  return f;
}

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

bool rope_depends_on_length(const ModelConfig& cfg) {
  return cfg.rope_scaling.kind == RopeKind::dynamic || cfg.rope_scaling.kind == RopeKind::longrope;
}

int64_t rope_length_key(const ModelConfig& cfg, int64_t seq_len) {
  const RopeScaling& r = cfg.rope_scaling;
  if (r.kind == RopeKind::dynamic) return std::max<int64_t>(seq_len, cfg.max_position_embeddings);
  if (r.kind == RopeKind::longrope) return seq_len > r.original_max_position_embeddings ? 1 : 0;
  return 0;
}

RopeFrequencies rope_frequencies(const ModelConfig& cfg, int64_t seq_len) {
  const RopeScaling& r = cfg.rope_scaling;
  const int dim = cfg.head_dim;
  const double base = cfg.rope_theta;
  RopeFrequencies out;
  switch (r.kind) {
    case RopeKind::none:
      out.inv_freq = default_inv_freq(base, dim);
      break;
    case RopeKind::linear:
      out.inv_freq = default_inv_freq(base, dim);
      for (float& f : out.inv_freq) f /= static_cast<float>(r.factor);
      break;
    case RopeKind::dynamic: {
      // seq_len below max_position_embeddings: plain RoPE (the factor term is 1).
      const double max_pos = cfg.max_position_embeddings;
      const double len = std::max<double>(static_cast<double>(seq_len), max_pos);
      const double scaled = base * std::pow(r.factor * len / max_pos - (r.factor - 1.0),
                                            static_cast<double>(dim) / (dim - 2));
      out.inv_freq = default_inv_freq(scaled, dim);
      break;
    }
    case RopeKind::llama3: {
      const std::vector<float> inv = default_inv_freq(base, dim);
      const double old_len = r.original_max_position_embeddings;
      const double low_wavelen = old_len / r.low_freq_factor;
      const double high_wavelen = old_len / r.high_freq_factor;
      const float factor = static_cast<float>(r.factor);
      out.inv_freq.resize(inv.size());
      for (size_t i = 0; i < inv.size(); ++i) {
        // torch: wavelen = 2 * pi / inv_freq in float32; comparisons against python floats.
        const float wavelen = static_cast<float>(2.0 * M_PI) / inv[i];
        float f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        if (medium) {
          const float smooth = static_cast<float>((old_len / wavelen - r.low_freq_factor) /
                                                  (r.high_freq_factor - r.low_freq_factor));
          f = (1.0f - smooth) * f / factor + smooth * f;
        }
        out.inv_freq[i] = f;
      }
      break;
    }
    case RopeKind::yarn: {
      const double orig = r.original_max_position_embeddings;
      const double factor = r.factor > 0.0 ? r.factor : cfg.max_position_embeddings / orig;
      double attention = r.attention_factor;
      if (attention == 0.0) {
        attention =
            (r.mscale != 0.0 && r.mscale_all_dim != 0.0)
                ? yarn_get_mscale(factor, r.mscale) / yarn_get_mscale(factor, r.mscale_all_dim)
                : yarn_get_mscale(factor, 1.0);
      }
      const double beta_fast = r.beta_fast != 0.0 ? r.beta_fast : 32.0;
      const double beta_slow = r.beta_slow != 0.0 ? r.beta_slow : 1.0;
      auto correction_dim = [&](double rotations) {
        return (dim * std::log(orig / (rotations * 2.0 * M_PI))) / (2.0 * std::log(base));
      };
      double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
      if (r.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // transformers: prevent singularity
      out.inv_freq.resize(static_cast<size_t>(dim / 2));
      for (int i = 0; i < dim / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
        const float pos_freq = std::pow(static_cast<float>(base), e);
        const float extrapolation = 1.0f / pos_freq;
        const float interpolation = 1.0f / (static_cast<float>(factor) * pos_freq);
        const float ramp = std::clamp(
            (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low),
            0.0f, 1.0f);
        const float extrapolation_factor = 1.0f - ramp;
        out.inv_freq[static_cast<size_t>(i)] =
            interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
      }
      out.attention_factor = static_cast<float>(attention);
      break;
    }
    case RopeKind::longrope: {
      const double orig = r.original_max_position_embeddings;
      const double factor = r.factor > 0.0 ? r.factor : cfg.max_position_embeddings / orig;
      double attention = r.attention_factor;
      if (attention == 0.0) {
        attention = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(orig));
      }
      const std::vector<double>& ext = seq_len > orig ? r.long_factor : r.short_factor;
      TPI_CHECK(static_cast<int>(ext.size()) == dim / 2,
                "longrope: " << ext.size() << " factors for head_dim/2 = " << dim / 2);
      out.inv_freq.resize(static_cast<size_t>(dim / 2));
      for (int i = 0; i < dim / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
        out.inv_freq[static_cast<size_t>(i)] =
            1.0f / (static_cast<float>(ext[static_cast<size_t>(i)]) *
                    std::pow(static_cast<float>(base), e));
      }
      out.attention_factor = static_cast<float>(attention);
      break;
    }
  }
  return out;
}

}  // namespace tpinfer
