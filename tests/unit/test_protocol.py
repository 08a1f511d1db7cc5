from nornir_portscan.engine.protocol import FrameReader, Progressed, Unit, frame


def test_frames_survive_any_split():
    messages = [Unit(1, 0, "127.0.0.1", (22, 80), None, None, None), Progressed(5), "stop"]
    data = b"".join(frame(m) for m in messages)
    for step in (1, 3, 7, len(data)):
        reader = FrameReader()
        got = []
        for i in range(0, len(data), step):
            got.extend(reader.feed(data[i : i + step]))
        assert got == messages
