/// How counts and ages read in messages, the same in every front end.
public enum Wording {
    /// "1 snapshot", "2 snapshots".
    public static func counted(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }

    /// "3 d 4 h", "2 h 5 min", "40 min", "12 s": an age in its two largest units.
    public static func age(_ seconds: Double) -> String {
        let whole = max(0, Int(seconds))
        let (days, hours, minutes) = (whole / 86_400, whole / 3_600 % 24, whole / 60 % 60)
        if days > 0 { return hours > 0 ? "\(days) d \(hours) h" : "\(days) d" }
        if whole >= 3_600 { return minutes > 0 ? "\(whole / 3_600) h \(minutes) min" : "\(whole / 3_600) h" }
        return whole >= 60 ? "\(whole / 60) min" : "\(whole) s"
    }
}
