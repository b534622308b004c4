"""systemd unit files, read the way systemd reads their settings."""


def parse_unit(path):
    """{section: [(key, value), ...]}: systemd allows a key more than once."""
    sections = {}
    current = None
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: keep directives on one line"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{number}: directive before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


class Unit:
    """One parsed unit file, read the way systemd reads its settings."""

    def __init__(self, path):
        self.name = path.name
        self.sections = parse_unit(path)

    def assignments(self, section, key):
        return [value for name, value in self.sections.get(section, []) if name == key]

    def value(self, section, key):
        """A single-valued setting: the last assignment wins, as in systemd."""
        values = self.assignments(section, key)
        return values[-1] if values else None

    def items(self, section, key):
        """A list setting: each assignment adds its words, an empty one resets."""
        result = []
        for value in self.assignments(section, key):
            result = result + value.split() if value else []
        return result
