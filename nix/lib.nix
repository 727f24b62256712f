# vmsup's Nix library. It needs no nixpkgs: only builtins.
#
#   let vmsupLib = import ./nix/lib.nix; in
#   vmsupLib.serviceDir { vmsup = pkgs.vmsup; vm = { name = "work"; services = [ ... ]; }; }
#
# A VM is a Nix attribute set shaped exactly like vmsup's JSON config
# (docs/reference.md): vmJSON turns it into that JSON, and serviceDir into
# an s6 service directory built by the static vmsup itself
# (`vmsup s6-servicedir --config-json`), so it builds in the Nix sandbox
# with no shell and no other input than vmsup and what the config names.
rec {
  # The VM's JSON config (a string). Store paths in it (a package's
  # binary, say) carry their string context, so whatever uses the JSON
  # depends on them.
  vmJSON = vm: builtins.toJSON vm;

  # An s6 service directory for vm: run, finish, notification-fd,
  # timeout-kill and config.json (the JSON above), and with logDir, a
  # log/ service running s6-log (s6Log: its path, e.g.
  # "${pkgs.s6}/bin/s6-log"; default s6-log from PATH).
  #
  # vmsup: a directory with bin/vmsup and bin/vmsup-exec side by side
  # (the package of ./package.nix, or any such path).
  #
  # The result is read-only, like everything in the store: s6-supervise
  # writes supervise/ and event/ into a service directory, so copy it
  # into the scan directory (as s6-rc copies its compiled services into
  # /run) or link it from an s6-rc source definition.
  serviceDir =
    { vmsup
    , vm
    , logDir ? null
    , s6Log ? null
    , system ? builtins.currentSystem
    }:
    derivation {
      name = "vmsup-${vm.name}";
      inherit system;
      builder = "${vmsup}/bin/vmsup";
      args = [ "s6-servicedir" "--config-json" (vmJSON vm) ]
        ++ (if logDir == null then [ ] else [ "--log" logDir ])
        ++ (if s6Log == null then [ ] else [ "--s6-log" s6Log ])
        ++ [ (builtins.placeholder "out") ];
    };
}
