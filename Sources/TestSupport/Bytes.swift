#if canImport(Glibc)
import Glibc
#endif

/// Byte-array equality through memcmp: `==` on arrays compares element by element, which in a
/// debug build is slow enough to dominate tests that compare whole images after every step.
public func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}

/// `count` bytes starting at `seed`, changing every 97 bytes (cheap to build in debug builds).
public func patternBytes(seed: UInt8, count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var value = seed
        var run = 0
        for i in 0..<count {
            buffer[i] = value
            run += 1
            if run == 97 { value &+= 1; run = 0 }
        }
        initialized = count
    }
}
