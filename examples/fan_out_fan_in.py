"""Fan out, fan in: one job per photo of an album, then a callback that zips their results.

``app.group(members, then=callback)`` enqueues the members (run in parallel, on any node) and a
fan-in callback that waits for all of them (``after=``), in one atomic batch. The callback reads
its members' results with ``await ctx.parent_results()``: parent id to result, in id order.

Three albums show the policies of a group (``on_failure``) when a member fails:

* ``summer``: every photo resizes (one after a transient failure and a retry): the zip gets
  every thumbnail;
* ``mixed``: one photo is corrupt and its job ends dead; with ``on_failure="run"`` the zip
  still runs once every member ended, and reads None for the corrupt one;
* ``strict``: the same corrupt photo, with the default ``on_failure="cancel"``: the zip is
  cancelled (``app.result`` raises ``JobFailed`` naming the parent), nothing half-made ships.

Each album is a ``workflow``: ``list_workflows`` counts its jobs by state (``actorq workflows
show album-mixed`` prints the same graph). Run it with ``python examples/fan_out_fan_in.py``.
"""

from __future__ import annotations

import anyio
import attrs

import transports
from actors.jobs import App, Constant, Drop, JobContext, JobFailed, Topology

app = App()
flaky: set[str] = set()  # photos whose first resize already failed


@attrs.frozen(kw_only=True)
class Photo:
    album: str
    name: str


@app.task("album.thumbnail", backoff=Constant(seconds=0.1))
async def thumbnail(ctx: JobContext, photo: Photo) -> dict[str, str] | Drop:
    await anyio.sleep(0.02)  # the resize
    if photo.name.startswith("corrupt"):
        return Drop(reason=f"{photo.name} is not an image")  # dead at once: no retry helps
    if photo.name == "beach.jpg" and photo.name not in flaky:
        flaky.add(photo.name)
        raise RuntimeError("the image service timed out")  # retried, then it succeeds
    return {"photo": photo.name, "thumbnail": f"thumbs/{photo.album}/{photo.name}"}


@app.task("album.zip")
async def zip_album(ctx: JobContext, album: str) -> dict[str, object]:
    results = await ctx.parent_results()  # every member's result, None for a failed one
    thumbnails = [r["thumbnail"] for r in results.values() if isinstance(r, dict)]
    missing = sum(1 for r in results.values() if r is None)
    return {"zip": f"{album}.zip", "thumbnails": thumbnails, "missing": missing}


async def export(album: str, photos: list[str], *, on_failure: str = "cancel") -> int:
    """Enqueue one album's export: a thumbnail job per photo, then the zip; the zip's id."""
    members = [app.request(thumbnail, Photo(album=album, name=name)) for name in photos]
    *_, zipped = await app.group(
        members,
        then=app.request(zip_album, album),
        workflow=f"album-{album}",
        on_failure=on_failure,
    )
    return zipped.job_id


async def main() -> None:
    async with transports.connect("sqlite:///albums.db") as transport:
        app.transport = transport
        summer = await export("summer", ["beach.jpg", "dunes.jpg", "pier.jpg"])
        mixed = await export("mixed", ["cat.jpg", "corrupt.jpg", "dog.jpg"], on_failure="run")
        strict = await export("strict", ["cat.jpg", "corrupt.jpg"])
        async with Topology.default(app, transport, concurrency=4).run():
            done = await app.result(summer, timeout=30.0, poll_interval=0.1)
            partial = await app.result(mixed, timeout=30.0, poll_interval=0.1)
            try:
                await app.result(strict, timeout=30.0, poll_interval=0.1)
                raise AssertionError("the strict album's zip should have been cancelled")
            except JobFailed as failed:
                refused = failed
        workflows = {w.workflow: w for w in await transport.list_workflows()}
    print(f"summer: {done}")
    print(f"mixed: {partial}")
    print(f"strict: {refused.state.value} ({refused.last_error})")
    for name, summary in sorted(workflows.items()):
        states = ", ".join(f"{n} {s.value}" for s, n in sorted(summary.by_state.items()) if n)
        print(f"{name}: {states}")
    assert done == {
        "zip": "summer.zip",
        "thumbnails": [f"thumbs/summer/{p}" for p in ["beach.jpg", "dunes.jpg", "pier.jpg"]],
        "missing": 0,
    }, done
    assert partial == {
        "zip": "mixed.zip",
        "thumbnails": [f"thumbs/mixed/{p}" for p in ["cat.jpg", "dog.jpg"]],
        "missing": 1,
    }, partial
    assert refused.state is transports.JobState.CANCELLED, refused.state
    assert all(summary.is_final for summary in workflows.values()), workflows


if __name__ == "__main__":
    anyio.run(main)
