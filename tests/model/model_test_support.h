// What the mpirun model tests share: the world, reading goldens, loading a converted model
// (<TPI_MODELS>/<name>-tp<N>, or with TPI_PP=P pipeline stages <name>-pp<P>-tp<N/P>) onto the
// CPU backend of every rank, and a Catch2 main in which every rank runs every test (the
// collectives need all of them) and rank 0 reports.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/pipe.h"
#include "comm/world.h"
#include "io/model_dir.h"
#include "runtime/engine/engine.h"

namespace tpinfer::test {

inline World*& world_ptr() {
  static World* w = nullptr;
  return w;
}
inline World& world() {
  return *world_ptr();
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

struct Loaded {
  ModelDir dir;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<PipeLink> pipe;  // pp > 1
  std::unique_ptr<Engine> engine;
};

// The directory suffix of this world's layout: "-tp2", or "-pp2-tp2" with pipeline stages.
inline std::string layout_tag() {
  const World& w = *world_ptr();
  return (w.pp() > 1 ? "-pp" + std::to_string(w.pp()) : std::string()) + "-tp" +
         std::to_string(w.tp());
}

// The converted model for this world size, loaded with this engine shape.
inline std::unique_ptr<Loaded> load_model(const std::string& name, const EngineShape& shape) {
  World& w = world();
  auto L = std::make_unique<Loaded>();
  const std::string path =
      env_or("TPI_MODELS", TPINFER_BUILD_DIR "/test-models") + "/" + name + layout_tag();
  L->dir = ModelDir::open(path);
  ShardDims dims = ShardDims::make(L->dir.config, w.tp(), w.tp_rank(), 0);
  if (w.pp() > 1) dims.set_stage(L->dir.split, w.pp_rank(), L->dir.config.tie_word_embeddings);
  L->backend = make_backend(BackendKind::cpu, BackendOptions{0, 1});
  L->comm = make_communicator(w.tp() == 1 ? CommKind::null : CommKind::mpi, w, *L->backend);
  L->pipe = make_pipe_link(CommKind::mpi, w, *L->backend);
  L->engine = std::make_unique<Engine>(L->dir.config, dims, shape, *L->backend, *L->comm);
  L->engine->set_pipe(L->pipe.get());
  L->engine->load(L->dir, w.rank());
  return L;
}

// main(): every rank runs every test; the job fails when any rank failed.
inline int run_all_ranks(int argc, char** argv) {
  World w(&argc, &argv);
  world_ptr() = &w;
  // TPI_PP=P: P pipeline stages of size / P ranks each (one replica).
  w.set_layout(0, std::atoi(env_or("TPI_PP", "1").c_str()));
  Catch::Session session;
  if (w.rank() != 0) session.configData().outputFilename = "/dev/null";
  const int rc = session.applyCommandLine(argc, argv);
  if (rc != 0) return rc;
  const int failed = session.run();
  return w.all_reduce_max_world(failed) > 0 ? 1 : 0;
}

}  // namespace tpinfer::test
