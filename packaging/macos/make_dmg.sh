#!/usr/bin/env bash
# Build Kodcu.app, test it, put it in a DMG; sign and notarize when the secrets are set.
#
#   packaging/macos/make_dmg.sh          (from the repository root, in the build venv)
#
# Signing needs all of these in the environment (the installer workflow maps them from
# the repository's secrets); without them the DMG is built unsigned and this says so:
#   MACOS_CERTIFICATE           base64 of a "Developer ID Application" certificate (.p12)
#   MACOS_CERTIFICATE_PASSWORD  the .p12's password
#   APPLE_ID, APPLE_TEAM_ID     the Apple account and team that notarize
#   APPLE_APP_PASSWORD          an app-specific password of that Apple ID
# PyInstaller signs every binary inside-out (nested dylibs and Qt frameworks first,
# the app last) with the hardened runtime, a secure timestamp and entitlements.plist.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
VERSION=$("$PYTHON" -c 'from importlib.metadata import version; print(version("kodcu"))')
DMG="dist/Kodcu-$VERSION-macos-$(uname -m).dmg"

signing=yes
for name in MACOS_CERTIFICATE MACOS_CERTIFICATE_PASSWORD APPLE_ID APPLE_TEAM_ID APPLE_APP_PASSWORD; do
  [ -n "${!name:-}" ] || signing=no
done

if [ "$signing" = yes ]; then
  # A throwaway keychain holds the certificate for this build only.
  keychain="$RUNNER_TEMP/kodcu-signing.keychain-db"
  keychain_password=$(uuidgen)
  certificate="$RUNNER_TEMP/kodcu-certificate.p12"
  echo "$MACOS_CERTIFICATE" | base64 --decode > "$certificate"
  security create-keychain -p "$keychain_password" "$keychain"
  security set-keychain-settings -lut 21600 "$keychain"
  security unlock-keychain -p "$keychain_password" "$keychain"
  security import "$certificate" -P "$MACOS_CERTIFICATE_PASSWORD" -A -t cert -f pkcs12 -k "$keychain"
  security set-key-partition-list -S apple-tool:,apple: -k "$keychain_password" "$keychain" >/dev/null
  security list-keychain -d user -s "$keychain" $(security list-keychains -d user | tr -d '"')
  rm -f "$certificate"
  KODCU_CODESIGN_IDENTITY=$(security find-identity -v -p codesigning "$keychain" \
    | awk -F'"' '/Developer ID Application/ {print $2; exit}')
  [ -n "$KODCU_CODESIGN_IDENTITY" ] || { echo "no Developer ID Application identity in MACOS_CERTIFICATE"; exit 1; }
  export KODCU_CODESIGN_IDENTITY
fi

"$PYTHON" packaging/build.py
if [ "$signing" = yes ]; then
  codesign --verify --deep --strict --verbose=2 dist/Kodcu.app
fi
QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/bundle_test.py dist/Kodcu.app

# The DMG: the app and a link to /Applications to drag it onto.
staging=$(mktemp -d)
cp -R dist/Kodcu.app "$staging/"
ln -s /Applications "$staging/Applications"
rm -f "$DMG"
hdiutil create -volname "Kodcu $VERSION" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$DMG"
rm -rf "$staging"

if [ "$signing" = yes ]; then
  codesign --force --sign "$KODCU_CODESIGN_IDENTITY" --timestamp "$DMG"
  xcrun notarytool submit "$DMG" --apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" \
    --password "$APPLE_APP_PASSWORD" --wait
  xcrun stapler staple "$DMG"
  xcrun stapler validate "$DMG"
  spctl --assess --type open --context context:primary-signature --verbose=2 "$DMG"
  echo "Built $DMG (signed, notarized, stapled)"
else
  echo "Built $DMG UNSIGNED: the signing secrets are not set (see packaging/README.md)."
  echo "Gatekeeper will refuse to open it until the user allows it in System Settings."
fi
