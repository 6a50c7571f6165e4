// serve/server.h: `longquant serve`, an OpenAI-compatible HTTP server on the engine.
//
// Endpoints (docs/serving.md has the full reference):
//   GET  /health               {"status": "ok", "model": NAME}
//   GET  /v1/models            the one served model
//   POST /v1/completions       prompt: string | [ids] | [string] | [[ids]] (several prompts: one choice each)
//   POST /v1/chat/completions  messages rendered with the model's chat template; stream: true sends
//                              server-sent events "data: {chunk}\n\n" ... "data: [DONE]\n\n"
// Every bad request gets HTTP 400 (503 when the engine queue is full or the server is
// stopping) with the OpenAI error body {"error": {"message", "type", "param", "code"}}.
//
// Concurrency: cpp-httplib's thread pool (http_threads workers) reads requests and
// validates them concurrently; generation runs on the Engine's single worker thread
// in arrival order, one request at a time.
//
// Life cycle: the constructor loads the model and binds the socket (port 0 picks a
// free port, see port()); run() serves until stop(); stop() stops accepting,
// refuses requests still waiting for the engine (503), lets the one being generated
// finish, and makes run() return once every connection's response is written.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/precision.h"
#include "serve/engine.h"

namespace lq {

struct ServeOptions {
  // The engine: model_dir, threads, max_context (0: the model's), precision,
  // chat_format, max_queue (requests allowed to wait, then 503), chunk_size.
  EngineOptions engine;
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port
  std::string served_name;           // "" = the model directory's base name
  int http_threads = 128;            // connections handled at once
};

// The default served name: the model directory's base name ("/m/Llama-3.1-8B/" -> "Llama-3.1-8B").
std::string served_model_name(std::string model_dir);

class Server {
 public:
  // Loads the model and binds host:port. Throws lq::Error on a bad model, option or address.
  explicit Server(const ServeOptions& o);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;                 // the bound port (the chosen one when asked for 0)
  const std::string& host() const;
  const std::string& model_name() const;  // the id clients put in "model"
  const Engine& engine() const;

  // Serves until stop() (from any thread); returns when the last response is written.
  void run();
  // Thread-safe and idempotent; also fine before run() (run() then returns at once).
  void stop();
  // True while run() is accepting connections.
  bool listening() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lq
