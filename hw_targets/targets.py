"""Loihi-style hardware targets: published capacity figures, each with its citation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privatesnn.errors import PrivsnnError


DAVIES_2018 = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
               "IEEE Micro 38(1):82-99, 2018, doi:10.1109/MM.2018.112130359")
LOIHI2_BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology "
                "brief, 2021 (summarised at open-neuromorphic.org/neuromorphic-computing/hardware/loihi-2-intel)")
LAVA_FIXED = "lava-nc 0.10.0 src/lava/proc/{lif,dense}/models.py (fixed_pt / bit_accurate_loihi models)"


class TargetLimitError(PrivsnnError):
    """A network does not fit the requested hardware (names the layer and by how much)."""


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    cores_per_chip: int
    neurons_per_core: int
    synapse_memory_kib_per_core: int
    weight_bits: int  # signed synaptic weight bits used by the deployment
    neurons_per_chip: int
    synapses_per_chip: int
    citations: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def synapses_per_core(self) -> int:
        """Synapses one core can store at ``weight_bits`` per synapse (memory bound, no index
        overhead: an optimistic capacity)."""
        return self.synapse_memory_kib_per_core * 1024 * 8 // self.weight_bits

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "cores_per_chip": self.cores_per_chip,
                "neurons_per_core": self.neurons_per_core,
                "synapse_memory_kib_per_core": self.synapse_memory_kib_per_core,
                "weight_bits": self.weight_bits, "synapses_per_core": self.synapses_per_core,
                "neurons_per_chip": self.neurons_per_chip, "synapses_per_chip": self.synapses_per_chip,
                "citations": dict(self.citations)}


TARGETS: dict[str, Target] = {
    "loihi1": Target(
        "loihi1", "Intel Loihi (first generation, 14 nm)", cores_per_chip=128, neurons_per_core=1024,
        synapse_memory_kib_per_core=128, weight_bits=8, neurons_per_chip=131_072, synapses_per_chip=130_000_000,
        citations={
            "cores_per_chip": f"128 neuromorphic cores [{DAVIES_2018}]",
            "neurons_per_core": f"1,024 compartments per core; 131,072 per chip [{DAVIES_2018}]",
            "synapse_memory_kib_per_core": "16 MB synaptic memory per chip / 128 cores "
                                           "[Davies 2018, as summarised in IEEE CAS Magazine Q2 2022, p. 21]",
            "weight_bits": f"1-9 bit weights on chip; 8-bit signed as in Lava's fixed_pt Dense [{LAVA_FIXED}]",
            "synapses_per_chip": f"130 million synapses per chip [{DAVIES_2018}]",
        }),
    "loihi2": Target(
        "loihi2", "Intel Loihi 2 (Intel 4)", cores_per_chip=128, neurons_per_core=8192,
        synapse_memory_kib_per_core=128, weight_bits=8, neurons_per_chip=1_048_576, synapses_per_chip=120_000_000,
        citations={
            "cores_per_chip": f"128 neuron cores (+6 Lakemont x86 cores) [{LOIHI2_BRIEF}]",
            "neurons_per_core": f"up to 1 million neurons per chip = 8,192 per core [{LOIHI2_BRIEF}]",
            "synapse_memory_kib_per_core": "128 KB local SRAM per core, flexibly partitioned between "
                                           "synapses and state [S: press summaries of the Loihi 2 brief; "
                                           "treated here as synaptic memory, an optimistic bound]",
            "weight_bits": f"8-bit signed weights as in Lava's fixed_pt Dense [{LAVA_FIXED}]",
            "synapses_per_chip": f"up to 120 million synapses per chip [{LOIHI2_BRIEF}]",
        }),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise PrivsnnError(f"unknown hardware target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]
