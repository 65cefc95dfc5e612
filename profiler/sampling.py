"""First-token sampling: greedy by default, temperature/top-p on request.

Sampling is part of TTFT (a serving engine does it before it can return a
token), so it is timed as its own component.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from analyzers.errors import ParameterError


@dataclass(frozen=True)
class Sampling:
    """How the first token is chosen; temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ParameterError("temperature", self.temperature, "is negative", "use 0 for greedy or a positive value")
        if not 0 < self.top_p <= 1:
            raise ParameterError("top_p", self.top_p, "is outside (0, 1]", "use a value such as 0.9")

    @property
    def method(self) -> str:
        return "greedy" if self.temperature == 0 else "top_p" if self.top_p < 1 else "temperature"

    def describe(self) -> dict:
        return {"method": self.method, **asdict(self)}

    def make(self, device: str):
        """Return a function logits[b, V] -> token ids [b]."""
        import torch

        if self.temperature == 0:
            return lambda logits: torch.argmax(logits, dim=-1)
        generator = torch.Generator(device=device).manual_seed(self.seed)
        temperature, top_p = self.temperature, self.top_p

        def sample(logits):
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
                # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
                drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                pick = torch.multinomial(sorted_probs, 1, generator=generator)
                return order.gather(-1, pick).squeeze(-1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

        return sample
