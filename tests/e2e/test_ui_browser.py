"""The Dagster UI as a data engineer uses it, in headless Chromium against a real `dagster dev`.

Open the asset graph, narrow it to `depth_maps` and its upstream, select both assets, pick the
`demo` partition in the launch dialog, launch, follow the run to success, then open the asset page
and read the materialization's metadata (counts, cost, provider). Screenshots of every step are
saved under the test's tmp dir (`<tmp>/screenshots/NN_*.png`); the path is printed.
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300)]

RUN_TIMEOUT_MS = 180_000


def test_materialize_demo_partition_from_the_asset_graph(dagster_dev, page, tmp_path):
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    print(f"screenshots: {shots}")
    started = time.monotonic()

    def shot(name: str) -> None:
        page.wait_for_timeout(400)  # let panels and dialogs finish animating
        page.screenshot(path=str(shots / f"{name}.png"))

    def graph_node(asset: str):
        return page.locator(f'foreignObject [data-tooltip="{asset}"]')

    # 1. The asset graph (global lineage), narrowed to depth_maps and what it depends on.
    page.goto(f"{dagster_dev.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    page.locator(".CodeMirror", has_text="Search and filter assets").first.click()
    page.keyboard.type('+key:"depth_maps"')
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"depth_maps"))
    # Groups start collapsed: open each one, as a person clicks the unfold icon.
    for _ in range(10):
        unfold = page.locator('foreignObject.group [aria-label="unfold_more"]')
        if unfold.count() == 0:
            break
        unfold.first.click()
        page.wait_for_timeout(300)
    expect(graph_node("source_images")).to_be_visible()
    expect(graph_node("depth_maps")).to_be_visible()
    shot("01_asset_graph")

    # 2. Select depth_maps (its sidebar shows the hosted-API pool), then add source_images.
    graph_node("depth_maps").click()
    sidebar_pool = page.get_by_text("flux_depth_hosted_api").first
    expect(sidebar_pool).to_be_visible()
    shot("02_depth_maps_sidebar")
    graph_node("source_images").click(modifiers=["Shift"])
    materialize = page.get_by_role("button", name=re.compile(r"Materialize selected \(2\)"))
    expect(materialize).to_be_visible()
    shot("03_two_assets_selected")

    # 3. The launch dialog: pick the `demo` partition, launch one run.
    materialize.click()
    dialog = page.locator(".bp5-dialog")
    expect(dialog.get_by_text("Launch runs to materialize 2 assets")).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    page.locator(".dagster-popover").get_by_text("demo", exact=True).first.click()
    page.keyboard.press("Escape")  # closes the partition dropdown, not the dialog
    expect(page.locator(".dagster-popover")).to_have_count(0)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    expect(dialog).to_contain_text("demo")  # the chosen partition's chip
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    shot("04_launch_dialog_demo_partition")
    launch.click()

    # 4. Follow the run from the toast to its page, until it succeeds.
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(toast).to_be_visible()
    short_id = re.search(r"[0-9a-f]{8}", toast.inner_text()).group(0)
    page.get_by_role("button", name="View").or_(page.get_by_role("link", name="View")).first.click()
    expect(page).to_have_url(re.compile(rf"/runs/{short_id}"))
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_text("partition: demo")).to_be_visible()
    shot("05_run_succeeded")

    # 5. The asset page: the latest materialization of depth_maps and its metadata.
    page.goto(f"{dagster_dev.url}/assets/depth_maps")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    metadata = page.locator("table", has=page.get_by_text("provider_calls", exact=True)).first
    expect(metadata).to_be_visible()
    rows = {}
    for row in metadata.locator(":scope > tbody > tr").all():
        cells = [c.strip() for c in row.locator(":scope > td").all_inner_texts()]
        if len(cells) >= 3:
            rows[cells[0]] = cells[-1]
    print("asset page metadata:", {k: v[:60] for k, v in rows.items()})
    assert rows["images"] == "6"
    assert rows["new"] == "6" and rows["cached"] == "0" and rows["failed"] == "0"
    assert rows["cost_usd"] == "0"  # the embedded local provider is free
    assert rows["cost"] == "$0.00 USD"  # and what a person reads, beside the number Dagster sums
    assert rows["provider"] == "local/local-monocular-cues"
    assert "catalogs/demo/depth_maps" in rows["output_dir"]
    metadata.get_by_text("provider_calls", exact=True).scroll_into_view_if_needed()
    shot("06_asset_page_metadata")

    # 6. The demo partition's own page: its materialization shows the contact sheet picture.
    # Dagster lists Markdown metadata as "[Show Markdown]"; a click opens it, picture included.
    page.goto(f"{dagster_dev.url}/assets/depth_maps?view=partitions&partition=demo")
    row = page.locator("tr", has=page.get_by_text("contact_sheet", exact=True)).last
    expect(row).to_be_visible()
    expect(page.get_by_text("$0.00 USD").first).to_be_visible()
    row.get_by_text("Show Markdown").click()
    sheet = page.locator('img[src^="data:image/jpeg;base64,"]').first
    expect(sheet).to_be_visible()
    sheet.scroll_into_view_if_needed()
    size = sheet.evaluate("img => [img.naturalWidth, img.naturalHeight, img.clientWidth]")
    print("contact sheet (natural w, h; shown w):", size)
    assert size[0] > 300 and size[1] > 200 and size[2] > 0  # decoded and laid out
    shot("07_partition_contact_sheet")
    print(f"UI flow took {time.monotonic() - started:.1f}s")

    # What the UI showed is what happened: the run in the instance, the files on disk.
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_dev.dagster_home)) as instance:
        runs = [r for r in instance.get_runs() if r.run_id.startswith(short_id)]
        assert len(runs) == 1
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags.get("dagster/partition") == "demo"
    depth_pngs = list(
        (dagster_dev.flux_depth_home / "catalogs" / "demo" / "depth_maps").glob("*.png")
    )
    assert len(depth_pngs) == 6
