// End-to-end test of `longquant serve`: start the real binary on a free port,
// read the port from its "listening on http://HOST:PORT" line, make requests,
// send SIGTERM and expect a clean exit (code 0).
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "core/testing.h"

namespace lq {
namespace {

using json = nlohmann::json;

// A child process running LQ_CLI_PATH with args; its stdout is readable through a pipe.
struct Child {
  pid_t pid = -1;
  int out_fd = -1;

  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> argv;
      std::string exe = LQ_CLI_PATH;
      argv.push_back(exe.data());
      std::vector<std::string> copy = args;
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_fd = fds[0];
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out_fd >= 0) ::close(out_fd);
  }

  // Reads stdout until a line matches re (or timeout / EOF); returns the match's first group.
  std::string wait_for_line(const std::regex& re, int timeout_s) {
    std::string buf;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char c[256];
      const ssize_t n = ::read(out_fd, c, sizeof c);
      if (n <= 0) break;
      buf.append(c, size_t(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        const std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        std::smatch m;
        if (std::regex_search(line, m, re)) return m[1];
      }
    }
    return "";
  }

  // Waits for the exit; returns the exit code, or -1 (signal / timeout).
  int wait_exit(int timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      const pid_t r = ::waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
};

TEST(CliServe, ServesAndExitsCleanlyOnSigterm) {
  const std::string model = testing::fixture_dir("tiny-llama31");
  Child c({"serve", "--model", model, "--port", "0", "--max-context", "128", "--threads", "1"});
  ASSERT_GT(c.pid, 0);
  const std::string port_s = c.wait_for_line(std::regex(R"(^listening on http://127\.0\.0\.1:(\d+)$)"), 60);
  ASSERT_FALSE(port_s.empty()) << "no 'listening on' line";
  const int port = std::stoi(port_s);
  ASSERT_GT(port, 0);

  httplib::Client cl("127.0.0.1", port);
  cl.set_read_timeout(30);
  auto h = cl.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["model"], "tiny-llama31");

  const json req = {{"model", "tiny-llama31"}, {"prompt", {1, 2, 3}}, {"max_tokens", 4}, {"temperature", 0}};
  auto r = cl.Post("/v1/completions", req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["choices"][0]["token_ids"].size(), j["usage"]["completion_tokens"].get<size_t>());
  auto bad = cl.Post("/v1/completions", "{oops", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);

  ASSERT_EQ(::kill(c.pid, SIGTERM), 0);
  EXPECT_EQ(c.wait_exit(30), 0);
}

TEST(CliServe, BadModelDirectoryFailsWithMessage) {
  Child c({"serve", "--model", "/nonexistent/model-dir", "--port", "0"});
  ASSERT_GT(c.pid, 0);
  EXPECT_EQ(c.wait_exit(30), 1);
}

}  // namespace
}  // namespace lq
