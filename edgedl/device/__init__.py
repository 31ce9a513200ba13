"""What this machine is and what edgedl can use on it.

``edgedl.device.jetson.detect_jetson`` identifies a Jetson (module, L4T/JetPack, power mode,
clocks, JetPack's libraries); ``edgedl.device.doctor.run_checks`` is ``edgedl doctor``. Every
detector reads files under a ``root`` and runs commands through a replaceable runner
(``edgedl.device.probe``), so the same code reads a device, a container or a fixture tree.
Nothing here imports a heavy module at import time.
"""
