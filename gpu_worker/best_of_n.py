"""Best-of-N for one chunk: synthesise candidates, hear each, keep the best.

A round makes `n_candidates` candidates with distinct seeds. Each goes through the signal
gates (qc.py), is transcribed by the validator with word times, scored against the text,
and through the transcript gates. If none passes every gate and `whisper_threshold`,
another round runs, up to `max_retries` extra rounds. The best candidate over all rounds
(passing first, then the highest score, fewer problems, the shorter) has any sound after its
last word cut away, and is returned with its word times, its reasons if it did not pass,
and every candidate's report.

Early acceptance (`accept_score`): an engine that synthesises one seed after another makes
and judges its round one candidate at a time, and stops at the first that passes every gate
with at least that score; the candidates it did not make are reported as skipped. An engine
that batches (Chatterbox on the GPU) still makes the whole round in one batch: its later
candidates cost little, so nothing is skipped there.
"""

import base64
import time
from dataclasses import dataclass

import numpy as np

from gpu_worker import qc, scoring
from gpu_worker.engines import Engine, load_engine
from gpu_worker.respelling import as_written
from gpu_worker.schema import (
    CandidateReport,
    GenerateMetadata,
    GenerateRequest,
    GenerateResult,
    WordTiming,
    request_digest,
)
from gpu_worker.settings import WorkerSettings
from gpu_worker.validator import Transcript, Validator, Word, proper_nouns
from gpu_worker.wav import encode_wav


@dataclass
class Candidate:
    audio: np.ndarray
    report: CandidateReport
    words: tuple[Word, ...] = ()

    def rank(self) -> tuple[bool, float, int, float]:
        """Passing first, then the higher score, fewer problems, the shorter reading."""
        r = self.report
        return (r.passed, r.score, -len(r.reasons), -r.duration_seconds)


def accepted(request: GenerateRequest, candidate: Candidate) -> bool:
    """Clearly excellent: passes every gate and scores at least `accept_score` (when set)."""
    report = candidate.report
    return (
        request.accept_score is not None and report.passed and report.score >= request.accept_score
    )


class BestOfN:
    """An engine and a validator, loaded once, serving one request at a time."""

    def __init__(self, engine: Engine, validator: Validator) -> None:
        self.engine = engine
        self.validator = validator

    @classmethod
    def load(cls, settings: WorkerSettings) -> "BestOfN":
        return cls(load_engine(settings), Validator(settings))

    def identity(self, voice: str | None) -> str:
        """What about this worker changes the audio for `voice` (part of the cache key)."""
        return f"{self.engine.identity(voice)} | {self.validator.identity}"

    def run(self, request: GenerateRequest) -> GenerateResult:
        """Best-of-N for one request: the chosen take, its word times and every report."""
        self.validator.check_language(request.language_id)
        candidates = self.candidates(request)
        best = max(candidates, key=Candidate.rank)
        reports = [c.report for c in candidates]
        retries = max(r.round for r in reports)
        rate = self.engine.sample_rate
        audio = qc.trim_tail(best.audio, rate, best.words[-1].end) if best.words else best.audio
        return GenerateResult(
            audio_base64=base64.b64encode(encode_wav(audio, rate)).decode("ascii"),
            best_score=best.report.score,
            passed=best.report.passed,
            reasons=best.report.reasons,
            transcript=best.report.transcript,
            words=[
                WordTiming(word=w.text, start=w.start, end=min(w.end, audio.size / rate))
                for w in best.words
            ],
            sample_rate=rate,
            audio_duration_seconds=round(audio.size / rate, 3),
            request_sha256=request_digest(request),
            metadata=GenerateMetadata(
                candidates_generated=len(reports),
                candidates_skipped=(retries + 1) * request.n_candidates - len(reports),
                candidates_passed=sum(r.passed for r in reports),
                all_scores=[r.score for r in reports],
                retries_used=retries,
                generation_time_ms=round(sum(r.synthesis_ms for r in reports), 1),
                validation_time_ms=round(sum(r.validation_ms for r in reports), 1),
                engine=self.engine.identity(request.voice),
                validator=self.validator.identity,
                candidates=reports,
            ),
        )

    def candidates(self, request: GenerateRequest) -> list[Candidate]:
        """Every candidate made for `request`, round by round until one passes."""
        made: list[Candidate] = []
        for round_ in range(request.max_retries + 1):
            first = request.seed + round_ * request.n_candidates
            made.extend(
                self.make_round(request, round_, list(range(first, first + request.n_candidates)))
            )
            if any(c.report.passed for c in made):
                break
        return made

    def make_round(
        self, request: GenerateRequest, round_: int, seeds: list[int]
    ) -> list[Candidate]:
        """One candidate per seed, group by group (`groups`), until one is accepted early."""
        made: list[Candidate] = []
        for group in self.groups(request, seeds):
            made.extend(self.make_group(request, round_, group))
            if any(accepted(request, c) for c in made):
                break
        return made

    def groups(self, request: GenerateRequest, seeds: list[int]) -> list[list[int]]:
        """The whole round at once, unless early acceptance is on and the engine makes its
        candidates one by one anyway: then one seed at a time, so the round can stop."""
        if request.accept_score is None or self.engine.batches:
            return [seeds]
        return [[seed] for seed in seeds]

    def make_group(
        self, request: GenerateRequest, round_: int, seeds: list[int]
    ) -> list[Candidate]:
        """One candidate per seed, synthesised together, then each heard and scored."""
        started = time.perf_counter()
        audios = self.engine.synthesize_batch(request, seeds)
        synthesis_ms = (time.perf_counter() - started) * 1000 / len(seeds)
        return [
            self.judge(request, round_, seed, audio, synthesis_ms)
            for seed, audio in zip(seeds, audios, strict=True)
        ]

    def candidate(self, request: GenerateRequest, round_: int, seed: int) -> Candidate:
        return self.make_round(request, round_, [seed])[0]

    def hear(
        self, request: GenerateRequest, reference: list[str], audio: np.ndarray, names: str
    ) -> tuple[Transcript, float, list[str]]:
        """Transcribe, score against the text, and apply the transcript gates."""
        rate = self.engine.sample_rate
        heard = self.validator.transcribe(audio, rate, request.language_id, names)
        hypothesis = as_written(scoring.words(heard.text), request.respellings)
        alignment = scoring.align(reference, hypothesis)
        problems = qc.transcript_gates(heard, alignment, reference, hypothesis, audio, rate)
        return heard, alignment.score, problems

    def judge(
        self,
        request: GenerateRequest,
        round_: int,
        seed: int,
        audio: np.ndarray,
        synthesis_ms: float,
    ) -> Candidate:
        """The gates of qc.py, Whisper, and the scorer: a candidate with its reasons."""
        started = time.perf_counter()
        rate = self.engine.sample_rate
        reference = scoring.words(request.text)
        reasons = qc.signal_gates(audio, rate, len(reference))
        heard, score = None, 0.0
        if not {"empty", "silent"} & set(reasons):
            heard, score, problems = self.hear(request, reference, audio, "")
            names = proper_nouns(request.text) if self.validator.hotwords else ""
            if names and (score < request.whisper_threshold or problems):
                # a second opinion that knows the names, kept only when it hears better
                again = self.hear(request, reference, audio, names)
                if (again[1], -len(again[2])) > (score, -len(problems)):
                    heard, score, problems = again
            reasons += problems
        if score < request.whisper_threshold:
            reasons.append("below_threshold")
        return Candidate(
            audio,
            CandidateReport(
                round=round_,
                seed=seed,
                score=score,
                passed=not reasons,
                transcript=heard.text if heard else "",
                duration_seconds=round(audio.size / rate, 3),
                reasons=reasons,
                synthesis_ms=round(synthesis_ms, 1),
                validation_ms=round((time.perf_counter() - started) * 1000, 1),
            ),
            heard.words if heard else (),
        )
