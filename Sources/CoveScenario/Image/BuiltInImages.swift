/// The images built into the binary, so `cove run` needs no file. Each is the text of the file of the
/// same name in guest-images/ (a test keeps the two identical).
public enum BuiltInImages {
  /// Every shipped image, by name, the default first.
  public static var all: [(name: String, text: String)] { [("default", defaultImage)] }

  /// guest-images/default.yaml.
  public static let defaultImage = """
    # The built-in image (`cove run` with no file): one cove-dma device and the whole trust story.
    name: default
    description: >-
      An untrusted probe with bounced DMA, then unbind, lock, attest, accept, rebind and DMA straight into
      private memory; the host clears bus mastering, the TDI goes to ERROR, the guest removes the driver
      and refuses mappings; then it recovers.
    seed: 1
    guest:
      memory: 16MiB
      boundary: half
      viommu: off
      swiotlb: 1MiB
      autoprobe: false
    devices:
      - model: cove-dma
        bus: 3
        functions: 2
        assign: ["03:00.1"]
    policy:
      trust-anchors: [device]
      measurements: device
    drivers: [cove-dma]
    steps:
      - bind: { device: "03:00.1", driver: cove-dma }
        expect: { driver: cove-dma, trust: untrusted }
      - dma: { device: "03:00.1", size: 16KiB }
        expect: { bytes: 16384, bounced: true, fault: false }
      - lock: "03:00.1"
        expect: { error: EBUSY, tdi: CONFIG_UNLOCKED }
      - unbind: "03:00.1"
        expect: { driver: none }
      - lock: "03:00.1"
        expect: { tdi: CONFIG_LOCKED, trust: locked }
      - verify: "03:00.1"
      - accept: "03:00.1"
        expect: { tdi: RUN, trust: accepted }
      - bind: { device: "03:00.1", driver: cove-dma }
      - dma: { device: "03:00.1", size: 64KiB }
        expect: { bytes: 65536, bounced: false, fault: false }
      - config-write: { device: "03:00.1", offset: 0x04, size: 2, value: 0x0002, by: host }
        expect: { tdi: ERROR, trust: revoked, driver: none }
      - dma: { device: "03:00.1", size: 4KiB }
        expect: { error: ENODEV }
      - bind: { device: "03:00.1", driver: cove-dma }
        expect: { error: EIO }
      - unlock: "03:00.1"
        expect: { tdi: CONFIG_UNLOCKED, trust: untrusted }
      - lock: "03:00.1"
      - accept: "03:00.1"
        expect: { tdi: RUN }
      - bind: { device: "03:00.1", driver: cove-dma }
      - dma: { device: "03:00.1", size: 64KiB }
        expect: { bytes: 65536, bounced: false }

    """
}
