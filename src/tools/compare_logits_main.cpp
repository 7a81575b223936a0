// tpinfer-compare-logits: how far a converted model's logits are from another conversion of the
// same model (e.g. --dtype int8 against --dtype f32), on the reference model's own greedy text.
//
//   mpirun -np TP tpinfer-compare-logits --ref DIR --test DIR [--steps 256] [--prompt-ids 1,2]
//       [--threads N]
//
// The reference model generates `steps` greedy tokens after the prompt (BOS by default); then
// both models run that whole sequence teacher-forced (chunked prefill, every position's logits),
// and at each of the `steps` predicting positions their argmax and logits are compared. The test
// model also generates freely, to show where its greedy text first leaves the reference's. Both
// directories must be converted for the job's tp (every rank loads its own shard of each). Prints
// one JSON object on stdout (rank 0): top1_agreement, max_abs_err, max_rel_err (max_abs_err over
// the largest |reference logit|), mean_abs_err, max_step_rel_l2 (the worst step's relative L2
// error), ref_ids, test_free_ids, first_divergence.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/world.h"
#include "core/error.h"
#include "io/model_dir.h"
#include "runtime/engine/engine.h"

using namespace tpinfer;

namespace {

constexpr int kChunk = 64;  // tokens per teacher-forced forward

struct Model {
  ModelDir dir;
  std::unique_ptr<Engine> engine;
};

int argmax(const float* l, int n) {
  return static_cast<int>(std::max_element(l, l + n) - l);
}

std::unique_ptr<Model> open(World& w, Backend& be, Communicator& comm, const std::string& path,
                            int max_seq) {
  auto m = std::make_unique<Model>();
  m->dir = ModelDir::open(path);
  check_job_tp(m->dir, w.tp());
  const ShardDims dims = ShardDims::make(m->dir.config, w.tp(), w.tp_rank(), 0);
  EngineShape shape{max_seq, 1, kChunk, kChunk};
  shape.int8_group = m->dir.int8_group;
  m->engine = std::make_unique<Engine>(m->dir.config, dims, shape, be, comm);
  m->engine->load(m->dir, w.rank());
  return m;
}

// Greedy ids after the prompt (every rank gets the gathered logits, so every rank agrees).
std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt, int steps) {
  const int V = e.config().vocab_size;
  std::vector<int32_t> out;
  const int P = static_cast<int>(prompt.size());
  std::vector<int32_t> pos(P), slots(P, 0);
  for (int i = 0; i < P; ++i) pos[i] = i;
  const int32_t last = P - 1;
  const float* l = e.step(prompt.data(), pos.data(), slots.data(), P, &last, 1, true);
  for (int s = 0; s < steps; ++s) {
    const int32_t id = argmax(l, V);
    out.push_back(id);
    if (s + 1 == steps) break;
    const int32_t p = P + s, slot = 0, row = 0;
    l = e.step(&id, &p, &slot, 1, &row, 1, true);
  }
  return out;
}

// Logits of every position of seq (teacher-forced), [seq.size(), V].
std::vector<float> forced(Engine& e, const std::vector<int32_t>& seq) {
  const int V = e.config().vocab_size;
  const int n = static_cast<int>(seq.size());
  std::vector<float> all(static_cast<size_t>(n) * V);
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int c = std::min(kChunk, n - c0);
    std::vector<int32_t> pos(c), slots(c, 0), rows(c);
    for (int i = 0; i < c; ++i) {
      pos[i] = c0 + i;
      rows[i] = i;
    }
    const float* l = e.step(seq.data() + c0, pos.data(), slots.data(), c, rows.data(), c, true);
    std::memcpy(all.data() + static_cast<size_t>(c0) * V, l, sizeof(float) * c * V);
  }
  return all;
}

int run(World& world, int argc, char** argv) {
  std::string ref_dir, test_dir;
  int steps = 256, threads = 0;
  std::vector<int32_t> prompt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      TPI_CHECK(i + 1 < argc, a << ": missing value");
      return argv[++i];
    };
    if (a == "--ref") {
      ref_dir = next();
    } else if (a == "--test") {
      test_dir = next();
    } else if (a == "--steps") {
      steps = std::atoi(next().c_str());
    } else if (a == "--threads") {
      threads = std::atoi(next().c_str());
    } else if (a == "--prompt-ids") {
      std::stringstream ss(next());
      std::string tok;
      while (std::getline(ss, tok, ',')) prompt.push_back(std::atoi(tok.c_str()));
    } else {
      TPI_FAIL("unknown argument '" << a
                                    << "'; usage: tpinfer-compare-logits --ref DIR --test DIR "
                                       "[--steps N] [--prompt-ids 1,2] [--threads N]");
    }
  }
  TPI_CHECK(!ref_dir.empty() && !test_dir.empty(), "--ref DIR and --test DIR are required");
  TPI_CHECK(steps >= 1, "--steps must be >= 1");
  world.set_tp(world.size());

  BackendOptions bo;
  bo.n_threads = threads;
  bo.int8_weights = true;  // either model may be int8 (float models load as before)
  std::unique_ptr<Backend> be = make_backend(BackendKind::cpu, bo);
  std::unique_ptr<Communicator> comm =
      make_communicator(world.tp() == 1 ? CommKind::null : CommKind::mpi, world, *be);
  const ModelDir probe = ModelDir::open(ref_dir);
  if (prompt.empty()) prompt.push_back(std::max(0, probe.config.bos_token_id));
  const int max_seq = static_cast<int>(prompt.size()) + steps;
  auto ref = open(world, *be, *comm, ref_dir, max_seq);
  auto test = open(world, *be, *comm, test_dir, max_seq);
  TPI_CHECK(ref->dir.config.vocab_size == test->dir.config.vocab_size,
            "the two models have different vocabularies");
  const int V = ref->dir.config.vocab_size;

  const std::vector<int32_t> ref_ids = greedy(*ref->engine, prompt, steps);
  const std::vector<int32_t> test_free = greedy(*test->engine, prompt, steps);
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), ref_ids.begin(), ref_ids.end() - 1);
  const std::vector<float> lr = forced(*ref->engine, seq);
  const std::vector<float> lt = forced(*test->engine, seq);

  const int P = static_cast<int>(prompt.size());
  int agree = 0, ref_self = 0;
  double max_abs = 0, sum_abs = 0, max_ref = 0, max_rel_l2 = 0;
  for (int s = 0; s < steps; ++s) {
    const float* a = lr.data() + static_cast<size_t>(P - 1 + s) * V;
    const float* b = lt.data() + static_cast<size_t>(P - 1 + s) * V;
    agree += argmax(a, V) == argmax(b, V);
    ref_self += argmax(a, V) == ref_ids[s];
    double num = 0, den = 0;
    for (int v = 0; v < V; ++v) {
      const double d = std::fabs(double(a[v]) - b[v]);
      max_abs = std::max(max_abs, d);
      sum_abs += d;
      max_ref = std::max(max_ref, std::fabs(double(a[v])));
      num += d * d;
      den += double(a[v]) * a[v];
    }
    max_rel_l2 = std::max(max_rel_l2, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  int diverge = -1;
  for (int s = 0; s < steps; ++s) {
    if (ref_ids[s] != test_free[s]) {
      diverge = s;
      break;
    }
  }
  if (world.rank() == 0) {
    nlohmann::json j;
    j["ref"] = ref_dir;
    j["test"] = test_dir;
    j["tp"] = world.tp();
    j["steps"] = steps;
    j["prompt_ids"] = prompt;
    j["top1_agreement"] = static_cast<double>(agree) / steps;
    j["ref_teacher_forced_matches_its_greedy"] = static_cast<double>(ref_self) / steps;
    j["max_abs_err"] = max_abs;
    j["max_rel_err"] = max_ref > 0 ? max_abs / max_ref : 0.0;
    j["mean_abs_err"] = sum_abs / (static_cast<double>(steps) * V);
    j["max_step_rel_l2"] = max_rel_l2;  // the worst step's |test - ref|_2 / |ref|_2
    j["max_abs_ref_logit"] = max_ref;
    j["first_divergence"] = diverge;
    j["ref_ids"] = ref_ids;
    j["test_free_ids"] = test_free;
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  World world(&argc, &argv);
  try {
    return run(world, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tpinfer-compare-logits: error: [rank %d] %s\n", world.rank(), e.what());
    world.abort(1);
  }
}
