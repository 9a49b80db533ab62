import os


def list_python_files(root):
    """Return the paths of all .py files below root."""
    result = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                
    return result
