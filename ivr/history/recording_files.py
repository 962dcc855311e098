"""Where a contact's recording is on disk, from its ``recording_ref``, or why it may not be read.

``contacts.recording_ref`` is data in a database, and a database can be
written by more than ivr (an import, a restore, an attacker with SQL access):
it is never used as a path. A ref must be a plain file name as ivr makes them
(:func:`ivr.call.is_recording_name`: no folder, no ``..``), it is looked up in
the configured recordings folder only, and what it resolves to (symlinks
followed) must be a regular file directly in that folder. Anything else is
refused, so serving a recording or purging one can never touch another file.
"""

from __future__ import annotations

from pathlib import Path

from ivr.call import is_recording_name

__all__ = ["RefusedRef", "recording_entry", "recording_file"]


class RefusedRef(ValueError):
    """A ``recording_ref`` that does not name a file in the recordings folder (it is never followed)."""


def recording_entry(folder: Path, ref: str) -> Path:
    """The folder entry ``ref`` names (which may not exist, or be a symlink); RefusedRef if ``ref``
    is not a plain recording file name."""
    if not is_recording_name(ref):
        raise RefusedRef(f"{ref[:80]!r} is not a plain recording file name")
    return folder.resolve() / ref


def recording_file(folder: Path, ref: str) -> Path:
    """The real path of the recording ``ref`` names in ``folder``.

    Raises RefusedRef for a ref that is not a plain file name, or whose file is
    a symlink out of the folder or not a regular file; FileNotFoundError when
    there is no such file (a recording never made, or already purged).
    """
    entry = recording_entry(folder, ref)
    try:
        real = entry.resolve(strict=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError) as exc:  # a symlink loop, a folder we may not enter
        raise RefusedRef(f"{ref!r} cannot be resolved: {type(exc).__name__}") from None
    if real.parent != entry.parent:
        raise RefusedRef(f"{ref!r} leads out of the recordings folder")
    if not real.is_file():
        raise RefusedRef(f"{ref!r} is not a regular file")
    return real
