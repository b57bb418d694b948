"""What the study reports share: a record's variant label."""


def variant_label(record: dict) -> str:
    """The variant's label from the resolved spec (its name if it has none)."""
    for v in record["spec"]["resolved"]["variants"]:
        if v["name"] == record["variant"]:
            return v.get("label") or v["name"]
    return record["variant"]
