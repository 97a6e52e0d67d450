// mlpx CUDA kernels for the CuPy training step (mlpx/_fast/cupy_step.py).
//
// SPDX-License-Identifier: BSD-3-Clause
//
// The including code defines the element type first: `typedef float real;` or
// `typedef double real;`. The same text is
//   - compiled by CuPy (cupy.RawModule, NVRTC) on a GPU,
//   - compiled for sm_90 by NVRTC in tests/test_cuda_kernels.py, with no GPU, and
//   - compiled as plain C++ by g++ in the same tests (tests/cuda_host.py supplies
//     threadIdx & co.) and run on the CPU against the generic Array API path.
// So: plain C++ only, no shared memory, no __syncthreads, and every kernel is a
// grid-stride loop (correct for any grid, including the host's one block of one thread).
//
// Activation codes (ACT_*) match mlpx/_fast/cupy_step.py's ACTIVATION_CODES.

#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_TANH 3
#define ACT_SIGMOID 4

__device__ __forceinline__ float r_exp(float x) { return expf(x); }
__device__ __forceinline__ double r_exp(double x) { return exp(x); }
__device__ __forceinline__ float r_log(float x) { return logf(x); }
__device__ __forceinline__ double r_log(double x) { return log(x); }
__device__ __forceinline__ float r_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double r_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float r_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double r_sqrt(double x) { return sqrt(x); }

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ real act_value(real v, int act, real slope) {
    switch (act) {
    case ACT_RELU:
        return v > (real)0 ? v : (real)0;
    case ACT_LEAKY_RELU:
        return v > (real)0 ? v : slope * v;
    case ACT_TANH:
        return r_tanh(v);
    case ACT_SIGMOID:
        // the two-branch form never overflows exp
        if (v >= (real)0) {
            return (real)1 / ((real)1 + r_exp(-v));
        } else {
            real e = r_exp(v);
            return e / ((real)1 + e);
        }
    default:
        return v;
    }
}

// dL/dx from dL/dy and the activation's output y (every supported activation's
// derivative is a function of y: relu and leaky relu have y > 0 exactly when x > 0).
__device__ __forceinline__ real act_grad(real dy, real y, int act, real slope) {
    switch (act) {
    case ACT_RELU:
        return y > (real)0 ? dy : (real)0;
    case ACT_LEAKY_RELU:
        return y > (real)0 ? dy : slope * dy;
    case ACT_TANH:
        return dy * ((real)1 - y * y);
    case ACT_SIGMOID:
        return dy * (y * ((real)1 - y));
    default:
        return dy;
    }
}

// z <- act(z + b) in place; z is (n / width, width) C-contiguous, b has `width` items.
extern "C" __global__ void bias_act_forward(real* z, const real* b, long long n,
                                            long long width, int act, real slope) {
    GRID_STRIDE(i, n) {
        z[i] = act_value(z[i] + b[i % width], act, slope);
    }
}

// z <- act(z) in place (a Dense layer without bias).
extern "C" __global__ void act_forward(real* z, long long n, int act, real slope) {
    GRID_STRIDE(i, n) {
        z[i] = act_value(z[i], act, slope);
    }
}

// g <- dL/dx in place, from g = dL/dy and y = act(x).
extern "C" __global__ void act_backward(real* g, const real* y, long long n, int act,
                                        real slope) {
    GRID_STRIDE(i, n) {
        g[i] = act_grad(g[i], y[i], act, slope);
    }
}

// Dropout, as mlpx.layers.Dropout: mask = (u >= p) * scale (scale = 1 / (1 - p)),
// out = x * mask. u holds the uniform draws; out may be x itself.
extern "C" __global__ void dropout_forward(const real* x, const real* u, real* mask,
                                           real* out, long long n, real p, real scale) {
    GRID_STRIDE(i, n) {
        real m = u[i] >= p ? scale : (real)0;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

// g <- g * m in place (the dropout backward).
extern "C" __global__ void multiply_inplace(real* g, const real* m, long long n) {
    GRID_STRIDE(i, n) {
        g[i] = g[i] * m[i];
    }
}

// Softmax + cross-entropy, one thread per row of the (rows, cols) logits z:
//   loss_rows[r] = -sum_j y[r,j] * log_softmax(z[r])_j
//   g[r, j]      = (softmax(z[r])_j - y[r, j]) * scale        (scale = 1 / rows)
// The same operations in the same order as mlpx.losses' generic softmax cross-entropy.
extern "C" __global__ void softmax_xent(const real* z, const real* y, real* g,
                                        real* loss_rows, long long rows, long long cols,
                                        real scale) {
    GRID_STRIDE(r, rows) {
        const real* zr = z + r * cols;
        const real* yr = y + r * cols;
        real* gr = g + r * cols;
        real m = zr[0];
        for (long long j = 1; j < cols; ++j) {
            m = zr[j] > m ? zr[j] : m;
        }
        real total = (real)0;
        for (long long j = 0; j < cols; ++j) {
            total += r_exp(zr[j] - m);
        }
        real lse = r_log(total);
        real loss = (real)0;
        for (long long j = 0; j < cols; ++j) {
            real logp = (zr[j] - m) - lse;
            loss += yr[j] * logp;
            gr[j] = (r_exp(logp) - yr[j]) * scale;
        }
        loss_rows[r] = -loss;
    }
}

// SGD, as mlpx.optimizers.SGD after the model's L2 term:
//   g' = (g + l2 p) + wd p;  vel <- momentum vel + g' (if has_vel);
//   step = nesterov ? g' + momentum vel : vel (or g' without momentum);  p <- p - lr step
// l2 and wd are 0 for parameters outside the decay mask.
extern "C" __global__ void sgd_update(real* p, const real* g, real* vel, long long n,
                                      real lr, real l2, real wd, real momentum,
                                      int has_vel, int nesterov) {
    GRID_STRIDE(i, n) {
        real pi = p[i];
        real gi = (g[i] + l2 * pi) + wd * pi;
        if (has_vel) {
            real b = momentum * vel[i] + gi;
            vel[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = pi - lr * gi;
    }
}

// Adam / AdamW, as mlpx.optimizers.Adam after the model's L2 term:
//   g' = (g + l2 p) + wd p              (wd: Adam's coupled decay; 0 for AdamW)
//   p <- shrink p                       (AdamW's decoupled decay; shrink = 1 otherwise)
//   m <- b1 m + c1 g';  v <- b2 v + c2 g'^2       (c1 = 1 - b1, c2 = 1 - b2 in double)
//   p <- p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
extern "C" __global__ void adam_update(real* p, const real* g, real* m, real* v,
                                       long long n, real step_size, real bc2_sqrt,
                                       real b1, real c1, real b2, real c2, real eps,
                                       real l2, real wd, real shrink) {
    GRID_STRIDE(i, n) {
        real p0 = p[i];
        real gi = (g[i] + l2 * p0) + wd * p0;
        real pi = p0 * shrink;
        real mi = b1 * m[i] + c1 * gi;
        real vi = b2 * v[i] + c2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (r_sqrt(vi) / bc2_sqrt + eps));
    }
}

// RMSProp, as mlpx.optimizers.RMSProp after the model's L2 term:
//   g' = (g + l2 p) + wd p;  s <- rho s + c g'^2  (c = 1 - rho);  u = g' / (sqrt(s) + eps)
//   vel <- momentum vel + u (if has_vel), u = vel;  p <- p - lr u
extern "C" __global__ void rmsprop_update(real* p, const real* g, real* s, real* vel,
                                          long long n, real lr, real rho, real c,
                                          real eps, real momentum, real l2, real wd,
                                          int has_vel) {
    GRID_STRIDE(i, n) {
        real pi = p[i];
        real gi = (g[i] + l2 * pi) + wd * pi;
        real si = rho * s[i] + c * (gi * gi);
        s[i] = si;
        real u = gi / (r_sqrt(si) + eps);
        if (has_vel) {
            u = momentum * vel[i] + u;
            vel[i] = u;
        }
        p[i] = pi - lr * u;
    }
}
