# Saves llama.cpp's intermediate f32 tensors (eval callback) and logits for one batch of token ids,
# as OUTDIR/<name>#<k>.npy. usage: llamacpp_dump.py MODEL OUTDIR ID,ID,...  (one batch, <= 512)
import sys, os, ctypes, numpy as np, llama_cpp as L
model_path, out, ids = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
os.makedirs(out, exist_ok=True)
base = ctypes.CDLL(os.path.join(os.path.dirname(L.__file__), "lib", "libggml-base.so"))
base.ggml_nbytes.restype = ctypes.c_size_t; base.ggml_nbytes.argtypes = [ctypes.c_void_p]
base.ggml_is_contiguous.restype = ctypes.c_bool; base.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
seen = {}
order = []
def cb(t, ask, ud):
    raw = ctypes.string_at(t, 320)
    ty = int.from_bytes(raw[0:4], "little")
    name = raw[256:320].split(b"\0")[0].decode()
    if ask:
        return True
    if ty != 0 or not base.ggml_is_contiguous(t):
        return True
    ne = [int.from_bytes(raw[16+8*i:24+8*i], "little", signed=True) for i in range(4)]
    data = int.from_bytes(raw[248:256], "little")
    n = ne[0]*ne[1]*ne[2]*ne[3]
    arr = np.ctypeslib.as_array((ctypes.c_float*n).from_address(data)).copy()
    k = seen.get(name, 0); seen[name] = k + 1
    fname = f"{name}#{k}"
    np.save(os.path.join(out, fname + ".npy"), arr.reshape(ne[3], ne[2], ne[1], ne[0]))
    order.append((fname, ne))
    return True
cbf = L.ggml_backend_sched_eval_callback(cb)
_quiet = L.llama_log_callback(lambda *a: None)
L.llama_log_set(_quiet, None)
L.llama_backend_init()
mp = L.llama_model_default_params()
model = L.llama_model_load_from_file(model_path.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx = 2048; cp.n_batch = 512; cp.n_ubatch = 512; cp.n_threads = 2; cp.n_threads_batch = 2
cp.flash_attn_type = 0
cp.cb_eval = cbf
ctx = L.llama_init_from_model(model, cp)
n = len(ids)
batch = L.llama_batch_init(n, 0, 1)
for i, t in enumerate(ids):
    batch.token[i] = t; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1
batch.n_tokens = n
assert L.llama_decode(ctx, batch) == 0
nv = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n * nv,)).reshape(n, nv).copy()
np.save(os.path.join(out, "logits.npy"), logits)
with open(os.path.join(out, "order.txt"), "w") as f:
    for name, ne in order: f.write(f"{name} {ne}\n")
print("done", n, nv)
