"""What a User-Agent header may leave behind: browser family, OS family and
device type, as parsed by ua-parser's maintained regexes.

The header is whatever the client chooses to send, so it can carry a name or a
phone number. The parser's families echo parts of it for clients it does not
know (an unknown bot's name, an Android device-model slot), so only families
named below survive; everything else becomes "other". Raw text is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ua_parser import parse

# Longer headers add nothing to a family and only cost regex time.
PARSED_PREFIX = 512

# ua-parser family -> the name we show. Unlisted families are not kept.
BROWSERS = {
    "Chrome": "Chrome",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "Chromium": "Chromium",
    "Firefox": "Firefox",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Safari": "Safari",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Edge": "Edge",
    "Edge Mobile": "Edge",
    "Opera": "Opera",
    "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet",
    "UC Browser": "UC Browser",
    "QQ Browser": "QQ Browser",
    "QQ Browser Mobile": "QQ Browser",
    "WeChat Browser": "WeChat",
    "WeChat": "WeChat",
    "Huawei Browser": "Huawei Browser",
    "MiuiBrowser": "MIUI Browser",
    "Baidu Browser": "Baidu Browser",
    "Sogou Explorer": "Sogou Explorer",
    "Yandex Browser": "Yandex Browser",
    "Vivaldi": "Vivaldi",
    "Brave": "Brave",
    "DuckDuckGo Mobile": "DuckDuckGo",
    "okhttp": "Android app",
    "CFNetwork": "iOS app",
    "Python Requests": "python-requests",
    "curl": "curl",
}
SYSTEMS = {
    "Android": "Android",
    "iOS": "iOS",
    "iPadOS": "iPadOS",
    "HarmonyOS": "HarmonyOS",
    "Windows": "Windows",
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Linux": "Linux",
    "Ubuntu": "Linux",
    "Debian": "Linux",
    "Fedora": "Linux",
}


class DeviceType(StrEnum):
    MOBILE = "mobile"
    TABLET = "tablet"
    DESKTOP = "desktop"
    BOT = "bot"
    OTHER = "other"


_TYPE_OF_SYSTEM = {
    "Android": DeviceType.MOBILE,
    "iOS": DeviceType.MOBILE,
    "iPadOS": DeviceType.TABLET,
    "HarmonyOS": DeviceType.MOBILE,
    "Windows": DeviceType.DESKTOP,
    "macOS": DeviceType.DESKTOP,
    "ChromeOS": DeviceType.DESKTOP,
    "Linux": DeviceType.DESKTOP,
}

UNKNOWN_DEVICE = "unknown device"
AUTOMATED_CLIENT = "automated client"


@dataclass(frozen=True)
class AgentSummary:
    browser: str | None
    system: str | None
    device_type: DeviceType

    @property
    def text(self) -> str:
        """ "Chrome on Android"; what sessions, device records and mail show."""
        if self.device_type is DeviceType.BOT:
            return AUTOMATED_CLIENT
        if self.browser and self.system:
            return f"{self.browser} on {self.system}"
        return self.browser or self.system or UNKNOWN_DEVICE


def summarise(user_agent: str) -> AgentSummary:
    result = parse(user_agent[:PARSED_PREFIX])
    device_family = result.device.family if result.device else None
    if device_family == "Spider":
        return AgentSummary(None, None, DeviceType.BOT)
    browser = BROWSERS.get(result.user_agent.family) if result.user_agent else None
    system = SYSTEMS.get(result.os.family) if result.os else None
    if system == "iOS" and device_family == "iPad":
        system = "iPadOS"
    device_type = _TYPE_OF_SYSTEM.get(system or "", DeviceType.OTHER)
    return AgentSummary(browser, system, device_type)
