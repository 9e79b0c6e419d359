"""Safe decoding of APScheduler 3's ``job_state`` column.

The exporter reads a database it does not control. ``job_state`` is a pickle, and unpickling
untrusted bytes with the stock unpickler runs whatever callable the bytes name, so this module
never does that. Instead:

* ``find_class`` answers from a fixed allowlist (datetime types, zoneinfo, pytz stand-ins,
  APScheduler's trigger classes). Every other global becomes an inert placeholder class: an
  app object stored in a job's ``args`` still decodes, while ``os.system`` and friends are never
  looked up, let alone called.
* The callables the allowlist does hand out are our own wrappers with narrow contracts
  (``getattr`` only for ``ZoneInfo._unpickle``, ``_codecs.encode`` only for latin-1 text, pytz
  constructors that build standard-library zones), so pytz need not be installed.
* ``AndTrigger``/``OrTrigger`` import the classes named in their state from ``__setstate__``,
  where ``find_class`` never looks; stand-ins check those names against the same allowlist.
* Classes without a ``__setstate__`` of their own are handed out as subclasses that have one:
  the pickle ``BUILD`` opcode applied to a class object would otherwise ``setattr`` attacker
  data onto the real APScheduler class for the whole process.
* A pre-scan of the opcodes (:mod:`exporter.sidecar.decode.pickle_scan`) rejects the two inputs the
  C unpickler handles badly: memo indices that make it allocate (and zero) gigabytes, and tuples
  nested deeply enough to crash the interpreter when hashed.
* And/Or triggers are measured on their pickled state before any is built (depth, children,
  total), since a pickle can reference one shared subtree many times.
* The decoded trigger is validated field by field, so code that later formats or evaluates it
  does not trip over hostile values.

The public surface is :class:`DecodedJob`, :class:`UndecodableJob` and
:func:`decode_job_state`. See ``docs/decoding.md``. One module per step: ``model`` (the result
and the limits), ``placeholders``, ``zones``, ``triggers`` (stand-ins and And/Or bounds),
``allowlist`` (the unpickler), ``validate`` and ``job`` (extraction).
"""

# The allowlist's classes are re-exported for the tests that prove no decode modifies them.
from exporter.sidecar.decode.allowlist import _ALLOWED_GLOBALS as _ALLOWED_GLOBALS
from exporter.sidecar.decode.allowlist import _STAND_INS as _STAND_INS
from exporter.sidecar.decode.job import decode_job_state
from exporter.sidecar.decode.model import MAX_JOB_STATE_BYTES, DecodedJob, UndecodableJob
from exporter.sidecar.decode.placeholders import _Constructor as _Constructor
from exporter.sidecar.decode.placeholders import _Placeholder as _Placeholder

__all__ = ["MAX_JOB_STATE_BYTES", "DecodedJob", "UndecodableJob", "decode_job_state"]
