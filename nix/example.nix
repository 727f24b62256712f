# examples/work.json written in Nix: the contract's VM, the Rust
# virtiofsd (Debian trixie's, as scripts/fetch-virtiofsd caches it) and a
# non-root QEMU. With the defaults it is exactly examples/work.json (the
# tests check that); the arguments let a test give it names of its own.
{ name ? "work"
, runtimeDir ? null
, cgroup ? null
, virtiofsd ? "/var/cache/vmsup-test/virtiofsd/current"
, share ? "/srv/vm/work"
, guest ? "/srv/vm/guest"
}:
let
  rt = if runtimeDir == null then "/run/vmsup/${name}" else runtimeDir;
  fsSock = "${rt}/fs.sock";
  qmp = "${rt}/qmp.sock";
in
{
  inherit name;
  uid = 2000;
  gid = 2000;
  landlock = "required";
  shutdown_timeout = "30s";
  mount = {
    propagation = "slave";
    readonly_paths = [ "/etc" "/usr" ];
    masked_paths = [ "/root" "/home" ];
    binds = [{ source = share; target = share; readonly = false; }];
  };
  services = [
    {
      name = "virtiofsd";
      argv = [
        "${virtiofsd}/ld-linux-x86-64.so.2" "--library-path" virtiofsd "${virtiofsd}/virtiofsd"
        "--fd=3" "--shared-dir=${share}" "--sandbox=none" "--inode-file-handles=mandatory" "--rlimit-nofile=0"
      ];
      env.RUST_LOG = "warn";
      uid = 2001;
      gid = 2001;
      capabilities = [ "CAP_DAC_READ_SEARCH" ];
      private_tmp = "64M";
      private_shm = "64M";
      sockets = [{ path = fsSock; fd = 3; mode = "0600"; uid = 2002; }];
      landlock_paths = {
        read = [ share "/proc" virtiofsd ];
        write = [ share ];
        execute = [ virtiofsd ];
      };
      # File handles need open_by_handle_at, which the default filter refuses.
      syscalls.allow = [ "open_by_handle_at" ];
      rlimits.nofile = 4096;
      on_exit = "shutdown";
    }
    {
      name = "vmm";
      argv = [
        "qemu-system-x86_64" "-machine" "q35" "-accel" "tcg" "-cpu" "max" "-m" "512" "-smp" "1"
        "-object" "memory-backend-memfd,id=mem,size=512M,share=on" "-numa" "node,memdev=mem"
        "-nodefaults" "-no-user-config" "-display" "none" "-serial" "stdio" "-no-reboot"
        "-kernel" "${guest}/vmlinuz" "-initrd" "${guest}/initrd" "-append" "console=ttyS0 panic=-1 quiet no_timer_check"
        "-chardev" "socket,id=fs,path=${fsSock}" "-device" "vhost-user-fs-pci,chardev=fs,tag=share"
        # vmsup binds the QMP socket and hands it over as fd 3: no
        # service creates anything in the runtime dir.
        "-chardev" "socket,id=qmp,fd=3,server=on,wait=off" "-mon" "chardev=qmp,mode=control"
      ];
      uid = 2002;
      gid = 2002;
      after = [ "virtiofsd" ];
      private_tmp = "64M";
      private_shm = "64M";
      sockets = [{ path = qmp; fd = 3; mode = "0600"; }];
      connect = [ fsSock ];
      ready.socket = qmp;
      vmm.qmp = qmp;
    }
  ];
}
// (if runtimeDir == null then { } else { runtime_dir = runtimeDir; })
// (if cgroup == null then { } else { inherit cgroup; })
