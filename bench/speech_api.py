"""The speech API's time to first audio: `narrator serve`'s app on 127.0.0.1 with the
embedded engine, asked through the official `openai` client for a streamed input of
`--chunks` paragraphs (one chunk each).

    python bench/speech_api.py [--chunks 6] [--workers 2] [--format pcm]

For each run: the time to the first audio byte, the time to the last, and their ratio,
first with a fresh cache (every chunk generated), then the same input again (every chunk
from the cache). A warm-up request first (Prefect's temporary server, the models loading)
is reported apart. Writes the figures to bench/results/.
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn

from bench.record import save
from flows.speech.app import ApiSettings, create_app
from tasks.settings import NarratorSettings

KEY = "sk-bench"
SENTENCES = [
    "The keeper climbed the stairs at dusk and lit the great lamp.",
    "The beam swept across the dark water all night, long and slow.",
    "At dawn the boat came home to the harbour with its catch.",
    "The gulls rose from the rocks and circled the old tower.",
    "By noon the wind had turned and the sea was grey and rough.",
    "In the evening the keeper wrote the whole day in his log.",
    "The supply boat was late, and the bread ran out on Thursday.",
    "On Sunday a letter came from the mainland with good news.",
]


def text(chunks: int, tag: str) -> str:
    said = [f"{SENTENCES[i % len(SENTENCES)]}" for i in range(chunks)]
    said[0] = f"{tag} {said[0]}"
    return "\n\n".join(said)


def stream(base: str, words: str, kind: str) -> dict[str, float]:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
    started, first, size = time.monotonic(), None, 0
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="heart",
        input=words,
        response_format=kind,  # type: ignore[arg-type]
    ) as response:
        for piece in response.iter_bytes():
            if piece and first is None:
                first = time.monotonic() - started
            size += len(piece)
    last = time.monotonic() - started
    return {"first_byte_s": round(first or last, 3), "last_byte_s": round(last, 3), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", default="pcm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = NarratorSettings(
            cache_dir=str(Path(scratch) / "cache"), local_workers=args.workers
        )
        app = create_app(ApiSettings(key=KEY), settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        warm = stream(base, "A warm-up sentence.", args.format)
        words = text(args.chunks, "Today,")
        runs: dict[str, Any] = {
            "generated": stream(base, words, args.format),
            "cached": stream(base, words, args.format),
        }
        time.sleep(1.0)  # the last request's flow run finishes after its last byte
        server.should_exit = True
    print(f"warm-up (Prefect's temporary server, models): {warm['last_byte_s']:.2f} s\n")
    print(f"{args.chunks} chunks, {args.workers} local workers, {args.format}\n")
    print("| run | first audio byte s | last byte s | first ÷ last |")
    print("|---|---:|---:|---:|")
    for name, run in runs.items():
        ratio = run["first_byte_s"] / run["last_byte_s"]
        run["first_over_last"] = round(ratio, 3)
        print(f"| {name} | {run['first_byte_s']:.2f} | {run['last_byte_s']:.2f} | {ratio:.2f} |")
    figures = {"chunks": args.chunks, "workers": args.workers, "format": args.format}
    path = save("speech_api", {**figures, "warm_up_s": warm["last_byte_s"], "runs": runs})
    print(f"\nfigures: {path}")


if __name__ == "__main__":
    main()
