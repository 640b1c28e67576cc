import sys

print(f"checked {len(sys.argv) - 1} file(s): " + ", ".join(sys.argv[1:]))
