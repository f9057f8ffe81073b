"""fakedetect: tell AI-generated images from real photographs."""

__version__ = "0.1.0"

#: Fixed label order. Never derived from folder order (Keras' alphabetical default would make fake = 0).
CLASS_NAMES = ("real", "fake")
REAL, FAKE = 0, 1
