// The kernels' thread pool: the calling thread and CODEGEEX_KERNEL_THREADS - 1 workers (default: the cores this
// process may run on, at most 8). linear.cc splits the weight rows of each matmul over it; decode_stack.cc the
// (row, head) pairs of attention; sampler.cc the rows.
//
// MindSpore calls the kernels from its own worker threads, so the pool's threads must not spin-wait for long
// (OpenMP's default fights MindSpore's pool): they poll briefly after a call, then sleep (Pool below).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <sched.h>
#include <thread>
#include <pthread.h>
#include <vector>
#include <immintrin.h>

#include "threads.h"

namespace {

// CODEGEEX_KERNEL_THREADS, or the cores this process may run on (at most 8)
int kernel_threads() {
  static const int threads = [] {
    const char *v = std::getenv("CODEGEEX_KERNEL_THREADS");
    if (v) return std::max(1, std::min(std::atoi(v), 64));
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    return std::max(1, std::min(cores, 8));
  }();
  return threads;
}

// CODEGEEX_KERNEL_SPIN_US: how long an idle pool worker polls for the next call before it sleeps (default 100)
int64_t spin_microseconds() {
  static const int64_t us = [] {
    const char *v = std::getenv("CODEGEEX_KERNEL_SPIN_US");
    return v ? std::max<int64_t>(0, std::min<int64_t>(std::atoll(v), 100000)) : int64_t{100};
  }();
  return us;
}

// A persistent pool. A call hands each worker a part and runs part 0 itself. After a part a worker polls for the
// next call for spin_microseconds(), then sleeps on a condition variable; the caller polls a count for the
// workers' parts. Why: a decode layer makes seven calls a few microseconds apart (six matmuls and the attention),
// and handing each to a sleeping worker through condition variables was slow on this project's 2-core virtual
// machine (24 batch-8 350M layers through ctypes: 48-54 ms so; 39.8 ms with the caller polling and workers that
// sleep at once; 34-39 ms with both polling; separate runs, not alternated). The poll is bounded so that between layers and steps the workers sleep and never
// compete for long with MindSpore's own threads (the spin-wait pitfall of OpenMP's default). Calls are serialised
// by a mutex: MindSpore may run two kernels at once, and they then share the pool one after the other.
// A process forked from the one that made the pool has none of its threads: there the kernels run on the calling
// thread alone (a call would otherwise wait forever for workers that do not exist). The pool is never destroyed:
// its workers end with the process, and in a forked child destroying its condition variable, which a parent's
// worker was sleeping on when the process was copied, would wait forever.
class Pool {
 public:
  explicit Pool(int workers) {
    pthread_atfork(nullptr, nullptr, [] { forked_child = true; });
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { loop(); });
  }
  int size() const { return static_cast<int>(threads_.size()) + 1; }
  // whether this process made the pool (its workers exist here): false in a process forked after it was made
  bool owned() const { return !forked_child; }
  // job(part) for part = 0 .. size()-1; part 0 on the calling thread
  void run(const std::function<void(int)> &job) {
    std::lock_guard<std::mutex> call(call_mutex_);
    job_ = &job;
    next_part_.store(1, std::memory_order_relaxed);
    remaining_.store(static_cast<int>(threads_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);   // a worker counts itself asleep under this lock: no lost wake-up
      if (sleeping_ > 0) wake_.notify_all();
    }
    job(0);
    for (int polls = 0; remaining_.load(std::memory_order_acquire) > 0; ++polls) {
      _mm_pause();
      if ((polls & 1023) == 1023) std::this_thread::yield();   // a descheduled worker: let it run
    }
  }

 private:
  void loop() {
    uint64_t seen = 0;                            // the generation at construction (a call may come before this runs)
    for (;;) {
      await(seen);
      seen = generation_.load(std::memory_order_acquire);
      (*job_)(next_part_.fetch_add(1, std::memory_order_relaxed));
      remaining_.fetch_sub(1, std::memory_order_release);
    }
  }
  // wait until the generation moves past seen: poll, then sleep
  void await(uint64_t seen) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_microseconds());
    for (int polls = 0;; ++polls) {
      if (generation_.load(std::memory_order_acquire) != seen) return;
      _mm_pause();
      if ((polls & 63) == 63 && std::chrono::steady_clock::now() >= until) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    ++sleeping_;
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    --sleeping_;
  }
  static inline bool forked_child = false;       // set in the child by the fork handler the constructor registers
  std::vector<std::thread> threads_;
  std::mutex mutex_, call_mutex_;
  std::condition_variable wake_;
  const std::function<void(int)> *job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> next_part_{1}, remaining_{0};
  int sleeping_ = 0;
};

Pool &pool() {
  static Pool *const instance = new Pool(kernel_threads() - 1);   // never destroyed (above)
  return *instance;
}

}  // namespace

namespace codegeex {
int thread_count() { return kernel_threads() > 1 && pool().owned() ? pool().size() : 1; }

void run_parts(const std::function<void(int)> &job) {
  if (thread_count() > 1) pool().run(job);
  else job(0);
}

void parallel_for(int64_t count, const std::function<void(int64_t, int64_t)> &body) {
  int parts = static_cast<int>(std::min<int64_t>(thread_count(), std::max<int64_t>(count, 1)));
  if (parts == 1) {
    body(0, count);
    return;
  }
  const int64_t per = (count + parts - 1) / parts;
  run_parts([&](int part) {
    if (part < parts) body(std::min(count, part * per), std::min(count, (part + 1) * per));
  });
}
}  // namespace codegeex
