// The kernels' thread pool (threads.cc): the calling thread plus CODEGEEX_KERNEL_THREADS - 1 workers.
#pragma once
#include <cstdint>
#include <functional>

namespace codegeex {

// how many parts run_parts hands out (1: no pool)
int thread_count();
// job(part) for part = 0 .. thread_count()-1, part 0 on the calling thread; returns when all are done. Calls from
// several threads at once run one after the other.
void run_parts(const std::function<void(int)> &job);
// body(begin, end) over [0, count) in parts on the pool (the calling thread takes the first part); one part when
// count < 2 or the pool has one thread
void parallel_for(int64_t count, const std::function<void(int64_t, int64_t)> &body);

}  // namespace codegeex
