/// CoveTransport: Cove's two boundaries (ARCHITECTURE.md, "two boundaries that matter") on real
/// sockets, with SwiftNIO.
///
/// - `GuestLink/`: the guest⇄host link. `cove host --listen PATH` serves guests on a Unix socket;
///   `cove guest IMAGE --connect PATH` runs a guest kernel in its own process and carries every
///   `GuestHostInterface` call over a versioned, length-prefixed binary framing.
/// - `SPDMSocket/`: the SPDM socket protocol of DMTF spdm-emu and QEMU (PROTOCOLS.md, "spdm-emu / QEMU
///   SPDM socket protocol"): `cove responder` serves a Cove device's DSM, `cove tsm` attests a peer.
public enum CoveTransport {}
