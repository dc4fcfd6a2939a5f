"""A fixed room key for tests that wire a host and a device together in-process."""

from drivers.wire.keys import RoomKey

TEST_KEY = RoomKey(bytes(range(32)))
