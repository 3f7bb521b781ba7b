"""The VM harness's own pieces that need no VM: module load order and the guest command script's quoting."""

import json
import subprocess

import vmharness


def test_boot_modules_load_after_their_dependencies(tmp_path):
    cache = vmharness.KernelCache(root=tmp_path)
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "VERSION").write_text("6.1.0-test\n")
    cache.modules_dir.mkdir(parents=True)
    (cache.modules_dir / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko\n")
    order = [p.rsplit("/", 1)[1] for p in cache._module_closure(["9pnet_virtio", "9p", "overlay"])]
    assert order == ["9pnet.ko", "9pnet_virtio.ko", "netfs.ko", "fscache.ko", "9p.ko"]  # overlay: built in


def test_the_guest_command_reaches_the_guest_word_for_word(tmp_path):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "VERSION").write_text("6.1.0-test\n")
    words = ["a b", "it's", "$HOME", "`true`", "*", ""]
    command = ["python3", "-c", "import json, sys, os; print(json.dumps([sys.argv[1:], os.getcwd()]))", *words]
    vmharness._write_run_files(tmp_path, vmharness.KernelCache(root=tmp_path), command, {})
    out = subprocess.run(["sh", str(tmp_path / "command.sh")], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [words, str(vmharness.REPO)]
