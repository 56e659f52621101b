"""s2s side by side with fairseq, OpenNMT-py, CTranslate2 and a plain PyTorch loop, in one sitting.

The peer toolkits come from the harness in ../shared/peers (its `run_all.sh setup` builds their
venvs under /tmp/peers/venvs and the shared data under /tmp/peers-data). Two steps:

    python bench/peers_compare.py prepare --peers ../shared/peers
        # slow, any time: step-N checkpoints (N = DECODE_CKPT_STEPS, 300) of s2s, fairseq and
        # OpenNMT-py trained on the same data with the same model and schedule, and the
        # CTranslate2 conversion of the OpenNMT-py one; all under /tmp/peers/work (~50 min on
        # an idle machine; what exists is kept, a stopped s2s run is resumed)
    python bench/peers_compare.py run --peers ../shared/peers [--s2s-decode-args="--quantize int8"]
        # the sitting, on an idle machine: one job at a time (~35 min), then one table of ratios

`run` measures (a) training throughput (target tokens/s incl. EOS over steps WARM..WARM+WINDOW,
max RSS; the harness's common/measure_train.py for every system, s2s included) of fairseq,
OpenNMT-py, the PyTorch reference and s2s; (b) the CPU's GEMM rates (common/peak_flops.py at the
training shapes, and the decoding shapes measured here) and the analytic FLOPs per token;
(c) decoding of the test set, greedy and beam 5, batches of 64, at most 128 tokens, time of the
decoding alone, BLEU by the harness's common/decode_report.py, for fairseq, CTranslate2 float32
and int8, OpenNMT-py and s2s (plus one s2s row per --s2s-decode-args). It refuses to start when
the 1-minute load average is above --max-load, records the load and the CPU time other processes
took during every job, writes every JSON line to the results folder and prints the table.
`table RESULTS_DIR` prints the table again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from peers_table import make_table  # noqa: E402  (bench/, this script's folder)
from s2s import __version__  # noqa: E402

S2S_BENCH = REPO / "bench" / "peers_s2s.py"


# ------------------------------------------------------------------------------------------------
# settings and paths


def harness_env(peers: Path, args) -> dict[str, str]:
    """This process's environment plus the harness's hparams.sh (WARM/WINDOW etc. from flags)."""
    env = dict(os.environ)
    env.update(PEERS_VENVS=os.environ.get("PEERS_VENVS", "/tmp/peers/venvs"),
               PEERS_DATA=os.environ.get("PEERS_DATA", "/tmp/peers-data"),
               PEERS_WORK=os.environ.get("PEERS_WORK", "/tmp/peers/work"),
               DECODE_CKPT_STEPS=str(args.steps), OMP_NUM_THREADS="2", MKL_NUM_THREADS="2",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name in ("warm", "window"):
        if getattr(args, name, None) is not None:
            env[name.upper()] = str(getattr(args, name))
    out = subprocess.run(["bash", "-c", f"source {shlex.quote(str(peers / 'common/hparams.sh'))}"
                          " && env -0"], env=env, capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


class Paths:
    def __init__(self, peers: Path, env: dict[str, str], steps: int):
        self.peers, self.steps = peers, steps
        self.venvs, self.data = Path(env["PEERS_VENVS"]), Path(env["PEERS_DATA"])
        self.work = Path(env["PEERS_WORK"])
        self.py = self.venvs / "base" / "bin" / "python"  # the harness's tools run here
        self.s2s_run = self.work / f"s2s-step{steps}"
        self.fairseq_dir = self.work / f"fairseq-step{steps}"
        self.onmt_dir = self.work / f"onmt-step{steps}"
        self.compare = self.work / "compare"  # PEERS_WORK of the decoding jobs: hypotheses, ct2

    @property
    def fairseq_ckpt(self) -> Path:
        found = sorted(self.fairseq_dir.glob(f"checkpoint_*_{self.steps}.pt"))
        return found[0] if found else self.fairseq_dir / f"checkpoint_?_{self.steps}.pt"

    @property
    def onmt_ckpt(self) -> Path:
        return self.onmt_dir / f"model_step_{self.steps}.pt"

    @property
    def s2s_ckpt(self) -> Path:
        return self.s2s_run / "checkpoints" / f"step-{self.steps:08d}"

    def check_setup(self) -> None:
        missing = [str(p) for p in (self.py, self.venvs / "fairseq" / ".peers-ok",
                                    self.venvs / "onmt" / ".peers-ok", self.data / "stats.json",
                                    self.data / "fairseq-bin" / "dict.en.txt") if not p.exists()]
        if missing:
            raise SystemExit(f"the harness is not set up (missing {', '.join(missing)}); run "
                             f"`bash {self.peers / 'run_all.sh'} setup` first (about 40 min)")


def find_peers(arg: str | None) -> Path:
    peers = Path(arg) if arg else REPO.parent / "shared" / "peers"
    if not (peers / "common" / "measure_train.py").is_file():
        raise SystemExit(f"no peer harness at {peers}; pass --peers PATH/TO/shared/peers")
    return peers.resolve()


# ------------------------------------------------------------------------------------------------
# the machine


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def busy_seconds() -> tuple[float, float]:
    """CPU seconds all processes have spent busy since boot, and seconds stolen by the host."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def own_children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_state() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), "")
    mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {"kind": "machine", "nproc": os.cpu_count(), "cpu_model": cpu,
            "avx512": " avx512f" in flags, "amx": " amx_tile" in flags,
            "mem_available": mem.get("MemAvailable", "").strip(), "kernel": platform.release(),
            "python": platform.python_version(), "s2s_commit": commit,
            "load_average": [round(x, 2) for x in load_average()], "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def wait_for_idle(max_load: float, wait: float) -> bool:
    """Whether the 1-minute load average is (or within `wait` seconds falls) below max_load."""
    deadline = time.time() + wait
    while load_average()[0] > max_load:
        if time.time() >= deadline:
            return False
        print(f"waiting for an idle machine (load {load_average()[0]:.2f} > {max_load})",
              file=sys.stderr, flush=True)
        time.sleep(15)
    return True


# ------------------------------------------------------------------------------------------------
# jobs: one at a time, each one's stdout JSON lines in RESULTS/NAME.jsonl


class Jobs:
    def __init__(self, results: Path, env: dict[str, str], cwd: Path):
        self.results, self.env, self.cwd = results, env, cwd
        results.mkdir(parents=True, exist_ok=True)
        self.state_file = results / "machine.jsonl"

    def run(self, name: str, command: list[str], env: dict | None = None) -> str:
        """Run one command alone; keep its stdout (JSON lines), stderr and the machine's state."""
        print(f"== {time.strftime('%H:%M:%S')} {name}: {shlex.join(command)}", file=sys.stderr, flush=True)
        before = self._snapshot()
        with open(self.results / f"{name}.err", "w") as err:
            proc = subprocess.run(command, env={**self.env, **(env or {})}, cwd=self.cwd,
                                  stdout=subprocess.PIPE, stderr=err, text=True)
        self._record(name, before, proc.returncode)
        (self.results / f"{name}.jsonl").write_text(proc.stdout)
        if proc.returncode:
            print(f"!! {name} failed (exit {proc.returncode}): see {self.results / name}.err",
                  file=sys.stderr, flush=True)
        return proc.stdout

    def _snapshot(self) -> dict:
        busy, steal = busy_seconds()
        return {"t": time.time(), "busy": busy, "steal": steal, "own": own_children_seconds(),
                "load": load_average()}

    def _record(self, name: str, before: dict, rc: int) -> None:
        after = self._snapshot()
        wall = after["t"] - before["t"]
        ncpu = os.cpu_count() or 1
        foreign = max((after["busy"] - before["busy"]) - (after["own"] - before["own"]), 0.0)
        state = {"kind": "job", "job": name, "rc": rc, "wall_s": round(wall, 1),
                 "load_before": [round(x, 2) for x in before["load"]],
                 "load_after": [round(x, 2) for x in after["load"]],
                 "foreign_cpu_frac": round(foreign / (wall * ncpu), 3),
                 "steal_frac": round((after["steal"] - before["steal"]) / (wall * ncpu), 3)}
        with open(self.state_file, "a") as f:
            f.write(json.dumps(state) + "\n")
        flag = "  << OTHER PROCESSES WERE BUSY" if state["foreign_cpu_frac"] > 0.05 else ""
        print(f"   {name}: {wall:.0f} s, load {state['load_before'][0]} -> {state['load_after'][0]}, "
              f"other processes {100 * state['foreign_cpu_frac']:.0f}% of the CPUs{flag}",
              file=sys.stderr, flush=True)


def s2s_decode(args) -> None:
    """The s2s decoding job of `run`: test greedy and beam 5, each reported like every peer's."""
    peers = find_peers(args.peers)
    py = Path(os.environ["PEERS_VENVS"]) / "base" / "bin" / "python"
    data, extra, version = Path(os.environ["PEERS_DATA"]), args.extra_args, s2s_version()
    for search in ("greedy", "beam5"):
        hyp = f"{args.hyps}.{search}.txt"
        start = time.time()
        proc = subprocess.run([sys.executable, str(S2S_BENCH), "decode", str(args.run.parent.parent), "--search",
                               search, "--source", str(data / "raw" / "test.de"), "--out", hyp,
                               "--checkpoint", args.run.name, "--extra-args", extra],
                              capture_output=True, text=True)
        wall = time.time() - start
        seconds = re.search(r"^PEERS_DECODE_SECONDS ([\d.]+)", proc.stdout, re.M)
        if proc.returncode or not seconds:
            raise SystemExit(f"s2s decoding failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        notes = (f"s2s translate --batch-size {os.environ['DEC_BATCH']} --beam {1 if search == 'greedy' else 5} "
                 f"--max-len {os.environ['MAX_DEC_LEN']} {extra}".strip()
                 + "; time = the batched decoding calls (s2s.translate.translate_ids: model loaded, input "
                 f"read); own SentencePiece 8k; ckpt {args.run}")
        subprocess.run([str(py), str(peers / "common/decode_report.py"), "--system", args.system,
                        "--version", version, "--search", search, "--format", "text", "--hyp", hyp,
                        "--seconds", seconds.group(1), "--wall", f"{wall:.2f}", "--notes", notes], check=True)


def s2s_version() -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return f"{__version__} ({commit})" if commit else __version__


def subset_data(paths: Paths, env: dict[str, str], sentences: int) -> Path:
    """A copy of PEERS_DATA whose test split is its first `sentences` lines (for dry runs)."""
    out = paths.work / f"data-test{sentences}"
    if (out / "fairseq-bin" / "test.de-en.en.bin").exists():
        return out
    (out / "fairseq-bin").mkdir(parents=True, exist_ok=True)
    for item in paths.data.iterdir():
        if item.is_file() and not (out / item.name).exists():
            (out / item.name).symlink_to(item)
    for folder in ("raw", "sp", "ids"):
        (out / folder).mkdir(exist_ok=True)
        for item in (paths.data / folder).iterdir():
            target = out / folder / item.name
            if item.name.startswith("test."):
                lines = item.read_text(encoding="utf-8").splitlines(keepends=True)[:sentences]
                target.write_text("".join(lines), encoding="utf-8")
            elif not target.exists():
                target.symlink_to(item)
    for item in (paths.data / "fairseq-bin").iterdir():
        if not item.name.startswith("test.") and not (out / "fairseq-bin" / item.name).exists():
            (out / "fairseq-bin" / item.name).symlink_to(item)
    subprocess.run([str(paths.venvs / "fairseq/bin/fairseq-preprocess"), "--source-lang", "de",
                    "--target-lang", "en", "--testpref", str(out / "sp" / "test"),
                    "--srcdict", str(paths.data / "fairseq.dict"), "--joined-dictionary",
                    "--destdir", str(out / "fairseq-bin.new"), "--workers", "1"],
                   env=env, check=True, capture_output=True)
    for item in (out / "fairseq-bin.new").glob("test.*"):
        item.rename(out / "fairseq-bin" / item.name)
    return out


# ------------------------------------------------------------------------------------------------
# prepare: the step-N checkpoints (slow; the machine need not be idle)


def prepare(args) -> None:
    peers = find_peers(args.peers)
    env = harness_env(peers, args)
    paths = Paths(peers, env, args.steps)
    paths.check_setup()
    logs = paths.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def run(name: str, command: list[str], extra_env: dict | None = None) -> None:
        print(f"== {time.strftime('%H:%M:%S')} {name} (log {logs / name}.log)", file=sys.stderr, flush=True)
        with open(logs / f"{name}.log", "w") as log:
            if subprocess.run(command, env={**env, **(extra_env or {})}, stdout=log,
                              stderr=subprocess.STDOUT, cwd=REPO).returncode:
                raise SystemExit(f"{name} failed: see {logs / name}.log")

    n = args.steps
    if not (paths.s2s_ckpt / "model.safetensors").is_file() and (paths.s2s_run / "checkpoints" / "last").exists():
        run("s2s", [sys.executable, "-m", "s2s", "train", str(paths.s2s_run), "--resume", "--device", "cpu"])
    if not (paths.s2s_ckpt / "model.safetensors").is_file():  # (s2s saves a stopped run: resumed above)
        overrides = subprocess.run([sys.executable, str(S2S_BENCH), "overrides", "--data", str(args.data),
                                    "--steps", str(n)], env=env, capture_output=True, text=True,
                                   check=True).stdout.split("\n")
        sets = [x for o in overrides if o for x in ("--set", o)]
        run("s2s", [sys.executable, "-m", "s2s", "train", "multi30k-de-en-transformer", *sets,
                    "--run-dir", str(paths.s2s_run), "--device", "cpu", "--overwrite"])
    if not paths.fairseq_ckpt.is_file():
        run("fairseq", ["bash", str(peers / "fairseq/train.sh"), "fp32", str(paths.fairseq_dir),
                        "--max-update", str(n), "--save-interval-updates", str(n),
                        "--keep-interval-updates", "-1", "--disable-validation", "--no-epoch-checkpoints"])
    if not paths.onmt_ckpt.is_file():
        run("opennmt", ["bash", str(peers / "opennmt/train.sh"), "fp32", str(paths.onmt_dir), str(n),
                        "-save_checkpoint_steps", str(n), "-valid_steps", "1000000"])
    ct2_model = paths.compare / "ct2" / f"model-{paths.onmt_ckpt.stem}" / "model.bin"
    if not ct2_model.is_file():  # the harness converts on first use; decode 64 sentences to do it
        small = subset_data(paths, env, 64)
        run("ctranslate2", ["bash", str(peers / "ctranslate2/bench_decode.sh"), str(paths.onmt_ckpt),
                            "float32"], {"PEERS_DATA": str(small), "PEERS_WORK": str(paths.compare)})
    for what, path in (("s2s", paths.s2s_ckpt), ("fairseq", paths.fairseq_ckpt),
                       ("opennmt-py", paths.onmt_ckpt), ("ctranslate2", ct2_model.parent)):
        print(f"{what:12s} step-{n} checkpoint: {path}")


# ------------------------------------------------------------------------------------------------
# run: the sitting


def run_sitting(args) -> None:
    peers = find_peers(args.peers)
    env = harness_env(peers, args)
    paths = Paths(peers, env, args.steps)
    paths.check_setup()
    for what, path in (("s2s", paths.s2s_ckpt / "model.safetensors"), ("fairseq", paths.fairseq_ckpt),
                       ("OpenNMT-py", paths.onmt_ckpt)):
        if not path.exists():
            raise SystemExit(f"no step-{args.steps} {what} checkpoint ({path}); run "
                             "`python bench/peers_compare.py prepare` first")
    warm, window = int(env["WARM"]), int(env["WINDOW"])
    if warm % 10 or window % 10:
        raise SystemExit("WARM and WINDOW must be multiples of 10 (fairseq and OpenNMT-py log every "
                         "10 steps, and the window is read from their logs)")
    results = args.results or Path("/tmp/peers/results") / time.strftime("compare-%Y%m%d-%H%M%S")
    if not wait_for_idle(args.max_load, args.wait_idle):
        message = (f"the machine is busy: 1-minute load average {load_average()[0]:.2f} > "
                   f"{args.max_load}; results measured now are worthless")
        if not args.force:
            raise SystemExit(f"refusing to start: {message} (wait, or --force for a dry run)")
        print(f"WARNING: {message}; going on because of --force", file=sys.stderr, flush=True)
    jobs = Jobs(results, env, REPO)
    state = {**machine_state(), "forced": bool(args.force), "warm": warm, "window": window,
             "steps": args.steps, "decode_sentences": args.decode_sentences or 1000,
             "s2s_decode_args": args.s2s_decode_args, "peers": str(peers),
             "peers_data": env["PEERS_DATA"], "command": shlex.join(sys.argv)}
    with open(jobs.state_file, "a") as f:
        f.write(json.dumps(state) + "\n")
    print(json.dumps(state), file=sys.stderr)
    p, py = peers, str(paths.py)
    decode_env = {"PEERS_WORK": str(paths.compare)}
    if args.decode_sentences:
        decode_env["PEERS_DATA"] = str(subset_data(paths, env, args.decode_sentences))
    (paths.compare / "s2s").mkdir(parents=True, exist_ok=True)
    for r in range(1, args.repeat + 1):
        tag = f"-r{r}" if args.repeat > 1 else ""
        if "micro" in args.stages:
            jobs.run(f"micro-peak-flops{tag}", [py, str(p / "common/peak_flops.py")])
            jobs.run(f"micro-gemm-decode{tag}", [sys.executable, __file__, "gemm-rates"])
        if "train" in args.stages:
            jobs.run(f"train-fairseq-fp32{tag}", ["bash", str(p / "fairseq/bench_train.sh"), "fp32"])
            jobs.run(f"train-opennmt-fp32{tag}", ["bash", str(p / "opennmt/bench_train.sh"), "fp32"])
            jobs.run(f"train-ref-fp32{tag}", ["bash", str(p / "torch_ref/bench.sh"), "train", "fp32"],
                     {"DECODE_CKPT_STEPS": "0"})
            jobs.run(f"train-s2s-fp32{tag}", [
                py, str(p / "common/measure_train.py"), "--system", "s2s", "--version", s2s_version(),
                "--mode", "fp32", "--parser", "stepline", "--warmup", str(warm), "--window", str(window),
                "--params-regex", r"PEERS_PARAMS (\d+)", "--notes",
                f"s2s Trainer.train_step in-process (bench/peers_s2s.py); batches <= {env['BATCH_TOKENS']} "
                "padded tokens (n*max(src, tgt+1)); pre-norm; own SentencePiece 8k", "--",
                sys.executable, str(S2S_BENCH), "train-steps", str(paths.s2s_run),
                "--steps", str(warm + window), "--work", str(paths.compare / "s2s" / "speed-run")])
        if "decode" in args.stages:
            note = f"step-{args.steps} checkpoint"
            jobs.run(f"decode-fairseq{tag}", ["bash", str(p / "fairseq/bench_decode.sh"),
                                              str(paths.fairseq_ckpt), note], decode_env)
            jobs.run(f"decode-ct2{tag}", ["bash", str(p / "ctranslate2/bench_decode.sh"),
                                          str(paths.onmt_ckpt), "float32", "int8"], decode_env)
            if not args.skip_opennmt_decode:
                jobs.run(f"decode-opennmt{tag}", ["bash", str(p / "opennmt/bench_decode.sh"),
                                                  str(paths.onmt_ckpt), note], decode_env)
            variants = [("s2s", "")] + [(f"s2s {extra}", extra) for extra in args.s2s_decode_args]
            for i, (system, extra) in enumerate(variants):
                jobs.run(f"decode-s2s-{i}{tag}", [
                    sys.executable, __file__, "s2s-decode", "--peers", str(peers), "--run", str(paths.s2s_ckpt),
                    "--system", system, f"--extra-args={extra}",
                    "--hyps", str(paths.compare / "s2s" / f"hyp.{i}")], decode_env)
    table = make_table(results)
    (results / "table.md").write_text(table)
    print(table)
    print(f"raw JSON lines, logs and machine state: {results}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# GEMM rates at the decoding shapes (rows = sentences x beam of one batch)


def gemm_rates() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    d, ff, vocab = int(os.environ.get("D_MODEL", 256)), int(os.environ.get("FFN", 1024)), 8000
    batch = int(os.environ.get("DEC_BATCH", 64))
    for rows in (batch, 5 * batch):
        for name, (k, n) in {"qkv/out": (d, d), "ffn up": (d, ff), "ffn down": (ff, d),
                             "vocab proj": (d, vocab)}.items():
            a, b = torch.randn(rows, k), torch.randn(k, n)
            for _ in range(5):
                a @ b
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.75:
                a @ b
                count += 1
            rate = 2 * rows * k * n * count / (time.perf_counter() - start) / 1e9
            print(json.dumps({"system": "cpu-peak", "metric": "matmul_gflops", "dtype": "float32",
                              "shape": f"{name} {rows}x{k}x{n}", "rows": rows, "kind": name,
                              "value": round(rate, 1), "unit": "GFLOP/s"}), flush=True)


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--peers", help="the harness folder (default: ../shared/peers)")
    common.add_argument("--steps", type=int, default=int(os.environ.get("DECODE_CKPT_STEPS", 300)),
                        help="training steps of the decoding checkpoints (default 300)")
    p = sub.add_parser("prepare", parents=[common], help="train the step-N checkpoints (slow)")
    p.add_argument("--data", type=Path, help="Multi30k JSON lines for s2s (default: next to the harness)")
    r = sub.add_parser("run", parents=[common], help="the measuring sitting (idle machine)")
    r.add_argument("--s2s-decode-args", action="append", default=[], metavar="ARGS",
                   help='more `s2s translate` options for an extra s2s decoding row, e.g. '
                        '--s2s-decode-args="--quantize int8" (repeatable)')
    r.add_argument("--warm", type=int, help="steps before the throughput window (default WARM or 20)")
    r.add_argument("--window", type=int, help="steps in the throughput window (default WINDOW or 100)")
    r.add_argument("--decode-sentences", type=int, default=0,
                   help="decode only the first N test sentences (dry runs; default all 1000)")
    r.add_argument("--stages", default="micro,train,decode", help="a subset of micro,train,decode")
    r.add_argument("--repeat", type=int, default=1, help="run every job N times; the table shows medians")
    r.add_argument("--skip-opennmt-decode", action="store_true", help="no OpenNMT-py decoding row")
    r.add_argument("--max-load", type=float, default=0.5, help="refuse above this 1-minute load average")
    r.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="wait up to this long for the load average to fall first")
    r.add_argument("--force", action="store_true", help="start even on a busy machine (dry runs only)")
    r.add_argument("--results", type=Path, help="default /tmp/peers/results/compare-DATE-TIME")
    t = sub.add_parser("table", help="print the table of a results folder again")
    t.add_argument("results", type=Path)
    sub.add_parser("gemm-rates", help="GEMM rates at the decoding shapes (a job of `run`)")
    d = sub.add_parser("s2s-decode", help="s2s's decoding (a job of `run`)")
    d.add_argument("--peers", help="the harness folder (default: ../shared/peers)")
    d.add_argument("--run", type=Path, required=True, help="RUN_DIR/checkpoints/step-N")
    d.add_argument("--system", default="s2s")
    d.add_argument("--extra-args", default="", help="more `s2s translate` options, one string")
    d.add_argument("--hyps", required=True, help="hypotheses go to HYPS.greedy.txt and HYPS.beam5.txt")
    args = parser.parse_args()
    if args.command == "prepare":
        args.data = args.data or find_peers(args.peers).parent / "data" / "multi30k"
        prepare(args)
    elif args.command == "run":
        args.stages = set(args.stages.split(","))
        run_sitting(args)
    elif args.command == "table":
        print(make_table(args.results))
    elif args.command == "s2s-decode":
        s2s_decode(args)
    else:
        gemm_rates()


if __name__ == "__main__":
    main()
